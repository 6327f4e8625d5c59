"""Shared helpers for the bench scripts: throwaway databases (PostgreSQL and SQLite), a fast bulk loader for
ledger rows, SQL statement and round-trip counters, percentiles, and plain-text tables.

Not a library for the app: nothing in ``chalicelib`` imports this.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pg8000.core
import pg8000.native
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql+pg8000://postgres@127.0.0.1:5432/postgres")
KINDS = ("postgres", "sqlite")

LEDGER_COLUMNS = ("session_id", "base_currency", "kind", "delta", "total_balance", "available_balance",
                  "reserved_balance", "asset_balances", "reference", "last_updated", "updated_by",
                  "updated_by_label", "update_reason", "units", "unit_value", "performance_index", "equity",
                  "market_time")

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ATB")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "atb")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


# ------------------------------------------------------------------------------------------------ Ctrl-C / TERM


def sigterm_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt, so ``finally`` blocks (which drop databases) run on kill too."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def quiet_logs() -> None:
    """The engine logs each session opening and fill; a benchmark wants only its tables on the terminal."""
    import logging

    from chalicelib.bot.observability import logger

    logger.setLevel(logging.ERROR)  # gaps in the recorded data are logged as warnings
    logging.getLogger("alembic").setLevel(logging.WARNING)


# --------------------------------------------------------------------------------------------- databases


def pg_connect(url: str) -> pg8000.native.Connection:
    u = make_url(url)
    return pg8000.native.Connection(user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
                                    port=u.port or 5432, database=u.database or "postgres")


def _pg_url(admin_url: str, name: str) -> str:
    u = make_url(admin_url)
    return URL.create(u.drivername, username=u.username, password=u.password, host=u.host, port=u.port,
                      database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def throwaway_database(kind: str, admin_url: str = DEFAULT_ADMIN_URL, *, migrate: bool = True) -> Iterator[str]:
    """A fresh database URL (migrated to head), dropped or deleted afterwards — also on error and Ctrl-C."""
    from chalicelib.db.engine import dispose_engines, get_engine
    from chalicelib.db.migrate import upgrade

    if kind == "sqlite":
        tmp = Path(tempfile.mkdtemp(prefix="atb-bench-"))
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        try:
            if migrate:
                upgrade(get_engine(url))
            yield url
        finally:
            dispose_engines()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    name = f"atb_bench_{uuid.uuid4().hex[:10]}"
    admin = pg_connect(admin_url)
    try:
        admin.run(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    url = _pg_url(admin_url, name)
    try:
        if migrate:
            upgrade(get_engine(url))
        yield url
    finally:
        dispose_engines()
        admin = pg_connect(admin_url)
        try:
            admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.close()


def backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


# ------------------------------------------------------------------------------------------------- loading


@dataclass
class LoadResult:
    rows: int
    seconds: float
    total: Decimal


@dataclass
class _Units:
    """The account's units while rows are generated: trading rows keep the units and move the value per unit."""

    state: Any
    last_value: Decimal = Decimal(1)


def _ledger_rows(session_id: int, start_total: Decimal, reserved: Decimal, count: int, first_time: datetime,
                 held: str, spacing: timedelta, units: _Units, first_index: int = 0) -> Iterator[tuple[Any, ...]]:
    """A consistent run of ledger rows: each row's balance is the previous one's plus its delta, and its units
    follow by the unit rules (positions at cost: no candle marks them here)."""
    from chalicelib import accounting

    total = start_total
    for i in range(count):
        kind, delta = ("trade_pnl", Decimal("3.21987654")) if i % 3 else ("fee", Decimal("-1.23456789"))
        total += delta
        available = total - reserved
        assets = {"USD": f"{available:.8f}"}
        if held:
            assets["BTC"] = held
        units.state = accounting.after_trading(units.state, total)
        state = units.state
        when = first_time + spacing * i
        # references as the tick writes them (a P&L row and an exit fee per synthetic trade), so verify reads them
        reference = f"trade:{10**9 + first_index + i}:{'pnl' if kind == 'trade_pnl' else 'exit_fee'}"
        yield (session_id, "USD", kind, f"{delta:.8f}", f"{total:.8f}", f"{available:.8f}", f"{reserved:.8f}",
               json.dumps(assets), reference, when, "bench", None, f"Bench row {i}", f"{state.units:f}",
               f"{state.unit_value:f}", f"{state.performance_index:f}", f"{total:.8f}", when)


def load_ledger(engine: Engine, session_id: int, rows: int, *, end: datetime | None = None,
                spacing: timedelta = timedelta(seconds=1)) -> LoadResult:
    """Append ``rows`` consistent ledger rows to a session in bulk (COPY on Postgres, executemany on SQLite) and
    update its cached balance and units so that ``atb db verify`` passes. The rows are ``spacing`` apart and end an
    hour before ``end`` (default: now), so the 24h-change query has real history to look through."""
    from sqlalchemy import select

    from chalicelib.db.models import TradingSession
    from chalicelib.db.types import utcnow
    from chalicelib.db.uow import read_transaction
    from chalicelib.ledger import held_quantities, open_positions, unit_state

    with read_transaction(engine) as db:
        session = db.execute(select(TradingSession).where(TradingSession.id == session_id)).scalar_one()
        start_total, reserved, version = session.total_balance, session.reserved_balance, session.version
        units = _Units(unit_state(session))
        held_map = held_quantities(open_positions(db, session_id))
    held = format(held_map["BTC"].normalize(), "f") if held_map.get("BTC") else ""
    if rows == 0:
        return LoadResult(0, 0.0, start_total)
    first_time = (end or utcnow()) - timedelta(hours=1) - spacing * rows
    final = start_total
    for i in range(rows):
        final += Decimal("3.21987654") if i % 3 else Decimal("-1.23456789")
    started = time.perf_counter()
    generated = _ledger_rows(session_id, start_total, reserved, rows, first_time, held, spacing, units, version)
    url = engine.url.render_as_string(hide_password=False)
    update = ("UPDATE trading_sessions SET total_balance = {t}, available_balance = {a}, units = {u}, "
              "unit_value = {v}, peak_unit_value = {p}, version = {n} WHERE id = {id}")
    if backend(url) == "postgres":
        conn = pg_connect(url)
        try:
            conn.run("BEGIN")
            conn.run(f"COPY account_balances ({', '.join(LEDGER_COLUMNS)}) FROM STDIN WITH (FORMAT csv)",
                     stream=_csv_chunks(generated))
            state = units.state
            conn.run(update.format(t=":t", a=":a", u=":u", v=":v", p=":p", n=":n", id=":id"), t=final,
                     a=final - reserved, u=state.units, v=state.unit_value, p=state.peak_unit_value, n=version + rows,
                     id=session_id)
            conn.run("COMMIT")
            conn.run("ANALYZE account_balances")
        finally:
            conn.close()
    else:
        path = make_url(url).database
        assert path
        lite = sqlite3.connect(path)
        try:
            lite.execute("BEGIN IMMEDIATE")
            placeholders = ", ".join("?" for _ in LEDGER_COLUMNS)
            stamp = "%Y-%m-%d %H:%M:%S.%f"
            lite.executemany(
                f"INSERT INTO account_balances ({', '.join(LEDGER_COLUMNS)}) VALUES ({placeholders})",
                ((*r[:9], r[9].replace(tzinfo=None).strftime(stamp), *r[10:17], r[17].replace(tzinfo=None).strftime(
                    stamp)) for r in generated),
            )
            state = units.state
            lite.execute(update.format(t="?", a="?", u="?", v="?", p="?", n="?", id="?"),
                         (f"{final:.8f}", f"{final - reserved:.8f}", f"{state.units:f}", f"{state.unit_value:f}",
                          f"{state.peak_unit_value:f}", version + rows, session_id))
            lite.execute("COMMIT")
            lite.execute("ANALYZE")
        finally:
            lite.close()
    return LoadResult(rows, time.perf_counter() - started, final)


def _csv_chunks(rows: Iterator[tuple[Any, ...]], chunk: int = 20_000) -> Iterator[str]:
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    n = 0
    for r in rows:
        writer.writerow(["" if v is None else (v.isoformat() if isinstance(v, datetime) else v) for v in r])
        n += 1
        if n == chunk:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
            n = 0
    if n:
        yield buf.getvalue()


# ------------------------------------------------------------------------------------------------ counting


class _RoundTrips:
    """Counts pg8000 round trips: every socket flush is followed by a wait for the server's answer."""

    def __init__(self) -> None:
        self.count = 0
        self._original: Callable[[Any], None] | None = None

    def install(self) -> None:
        if self._original is not None:
            return
        original = pg8000.core._flush
        self._original = original

        def counting(sock: Any) -> None:
            self.count += 1
            original(sock)

        pg8000.core._flush = counting


ROUND_TRIPS = _RoundTrips()


@dataclass
class Counter:
    """Statements seen by SQLAlchemy (``before_cursor_execute``) and pg8000 round trips, between start/stop."""

    statements: int = 0
    round_trips: int = 0
    texts: list[str] = field(default_factory=list)
    keep_text: bool = False


@contextlib.contextmanager
def counting(engine: Engine, *, keep_text: bool = False) -> Iterator[Counter]:
    ROUND_TRIPS.install()
    counter = Counter(keep_text=keep_text)

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counter.statements += 1
        if keep_text:
            counter.texts.append(" ".join(statement.split())[:100])

    event.listen(engine, "before_cursor_execute", before)
    trips_before = ROUND_TRIPS.count
    try:
        yield counter
    finally:
        counter.round_trips = ROUND_TRIPS.count - trips_before
        event.remove(engine, "before_cursor_execute", before)


# ---------------------------------------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def timed(call: Callable[[], object], iterations: int, warmup: int = 10) -> list[float]:
    """Milliseconds per call."""
    for _ in range(warmup):
        call()
    out = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


# -------------------------------------------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths,
                                                                                          strict=True))))
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                          strict=True))))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.2f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def machine() -> str:
    """One line naming the machine the figures came from."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    pg = ""
    with contextlib.suppress(Exception):
        conn = pg_connect(DEFAULT_ADMIN_URL)
        try:
            pg = ", PostgreSQL " + str(conn.run("SHOW server_version")[0][0]).split()[0]
        finally:
            conn.close()
    py = platform.python_version()
    sqlite_v = sqlite3.sqlite_version
    kernel = platform.release()
    load = ""
    with contextlib.suppress(OSError):
        load = "; load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores{mem}; Linux {kernel}; Python {py}, SQLite {sqlite_v}{pg} "
            f"(local, same machine){load}")


def progress(text: str) -> None:
    """One status line on stderr, rewritten in place."""
    sys.stderr.write("\r" + text.ljust(100)[:100])
    sys.stderr.flush()


def progress_done() -> None:
    sys.stderr.write("\r" + " " * 100 + "\r")
    sys.stderr.flush()
