"""Statements are prepared once per connection, by SQL text, and the cache is bounded (PostgreSQL)."""

from __future__ import annotations

import pg8000
import pytest
from sqlalchemy.engine import make_url

from chalicelib.db.driver import PreparedStatements

pytestmark = pytest.mark.postgres_only


def test_each_text_is_prepared_once_and_the_least_recently_used_goes_first(pg_database_url: str) -> None:
    u = make_url(pg_database_url)
    conn = pg8000.connect(user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
                          port=u.port or 5432, database=u.database)
    try:
        cache = PreparedStatements(conn, limit=2)
        one, two, three = "SELECT :a::int + 1", "SELECT :a::int + 2", "SELECT :a::int + 3"
        assert [list(row) for row in cache.get(one).run(a=1)] == [[2]]
        cache.get(two)
        assert cache.prepared == 2 and cache.get(one) is cache.get(one)  # served, not prepared again
        cache.get(three)  # over the limit: `two` (least recently used) is closed on the server
        assert list(cache.by_sql) == [one, three] and cache.prepared == 3
        names = {row[0] for row in conn.run("SELECT name FROM pg_prepared_statements")}
        assert len(names) == 2
        assert [list(row) for row in cache.get(two).run(a=1)] == [[3]] and cache.prepared == 4  # prepared again
    finally:
        conn.close()


def test_timestamps_read_back_exactly_as_pg8000_reads_them(pg_database_url: str) -> None:
    """The engine's connections read ``timestamptz`` with ``datetime.fromisoformat`` (driver.read_timestamptz);
    every value — microseconds or none, any offset, and what Python cannot hold — comes back as pg8000's own
    reader gives it, except an offset with seconds (local mean time before time zones, in a non-UTC session),
    which pg8000 leaves as text and this reads as the datetime it names."""
    from datetime import datetime

    from sqlalchemy import text

    from chalicelib.db.engine import get_engine

    values = ["2026-11-30 01:36:20.131458+00", "2026-11-30 01:36:20+00", "2026-11-30 01:36:20.1+00",
              "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00", "infinity", "-infinity",
              "2000-01-01 00:00:00+00 BC"]
    query = "SELECT " + ", ".join(f"'{v}'::timestamptz" for v in values)
    u = make_url(pg_database_url)
    plain = pg8000.connect(user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
                           port=u.port or 5432, database=u.database)
    try:
        for zone in ("UTC", "Asia/Kathmandu", "America/St_Johns"):
            plain.run(f"SET TIME ZONE '{zone}'")
            [expected] = plain.run(query)
            with get_engine(pg_database_url).connect() as conn:
                conn.execute(text(f"SET TIME ZONE '{zone}'"))
                got = list(conn.execute(text(query)).one())
                for value, theirs in zip(got, expected, strict=True):
                    if isinstance(theirs, str) and isinstance(value, datetime):  # pg8000 gave up on the offset
                        assert value.isoformat(" ") == theirs and value.utcoffset().seconds % 60 != 0  # type: ignore[union-attr]
                    else:
                        assert value == theirs and type(value) is type(theirs)
                        assert not isinstance(value, datetime) or value.utcoffset() == theirs.utcoffset()
                if zone == "Asia/Kathmandu":  # year 1 there is LMT, +05:41:16: pg8000 leaves text, our reader doesn't
                    assert isinstance(got[3], datetime)
                # and through a prepared statement (a parameter makes the dialect prepare it)
                [row] = conn.execute(text("SELECT CAST(:t AS timestamptz)"), {"t": values[0]}).all()
                assert row[0] == expected[0]
    finally:
        plain.close()
