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
