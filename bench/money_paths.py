"""Every money path on PostgreSQL with a big ledger: time, statements and round trips, beside a raw-driver floor.

Paths (one account with ``--rows`` ledger rows, one open position):

* balance change — ``balances.change_balance("deposit", 1)`` (the API's and CLI's use case), and a manual set;
* tick persistence — one candle's persistence with one ledger row: lock (with the open positions), the ledger's
  batch, the tick row, commit (``ledger.lock`` + ``ledger.Batch.write(tick_rows=…)``, as ``tick._apply`` does);
* rehydrate — ``open_session`` finding the active account, its balance, peak and open positions;
* GET /api/balance — ``balances.read_summary`` (the handler's database work: the summary in one snapshot).

Round trips are counted at the wire (``bench/_wire.py``: a TCP proxy between pg8000 and the server, counting each
turn of the conversation, so BEGIN and COMMIT count); statements are SQLAlchemy's ``before_cursor_execute`` calls
(BEGIN included, COMMIT/ROLLBACK not). Times are measured on a direct connection (no proxy).

The raw floor of a path sends the very statements the path sent (captured with their parameters) through pg8000
alone — each prepared once on its connection (``Connection.prepare``), BEGIN/COMMIT as simple queries — with no
ORM and no rules computed: what the driver and the server cost. A write's floor is captured from the same path run
on a second account of the same shape (one open position) and replayed there: a replay repeats the captured
values, so on the measured account it would put the cached balance, version and market time back to the moment of
capture, and the next summary would then sum a day of the loaded history (≈ 83,000 rows at 1,000,000: the ≈ 50 ms
p95 an earlier version of this script showed). A read's floor is captured again every round (untimed), so it reads
what the path reads now. The tick's candle time is moved on at each replay so that its unique key holds; the
database is thrown away at the end.

Paths and floors are measured interleaved (each round runs every cell once, in a shuffled order), so a change in
the machine's load hits all of them alike; medians are reported with the load average.

    .venv/bin/python bench/money_paths.py                     # 1,000,000 rows, 300 rounds
    .venv/bin/python bench/money_paths.py --rows 10000 --iterations 50
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C
import pg8000
from _wire import WireCounter
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from chalicelib import ledger
from chalicelib.balances import change_balance, read_summary
from chalicelib.bot.sessions import open_session
from chalicelib.bots import BotSpec
from chalicelib.db.engine import dispose_engines, get_engine
from chalicelib.db.models import Position
from chalicelib.db.types import utcnow
from chalicelib.db.uow import write_transaction
from chalicelib.ledger import Actor, held_quantities
from chalicelib.valuation import Mark

SPEC = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="binance")
#: The account the floors of the writes are captured on and replayed to (another bot: one active account per bot).
FLOOR_SPEC = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="kraken")
ME = Actor("bench")


@dataclass
class Path_:
    name: str
    run: Callable[[Engine], None]
    ending: str  # what ends its transaction on the wire: COMMIT or ROLLBACK
    #: A write: the same path on the floor's own account (its statements are what the floor replays there).
    floor_run: Callable[[Engine], None] | None = None
    times: list[float] = field(default_factory=list)
    raw_times: list[float] = field(default_factory=list)
    #: This process's CPU time per call (``time.process_time``): the Python cost, which the machine's load
    #: stretches less than the wall clock (the server's work runs in another process and is not counted).
    cpu: list[float] = field(default_factory=list)
    raw_cpu: list[float] = field(default_factory=list)
    statements: int = 0
    trips: int = 0
    raw_trips: int = 0
    captured: list[tuple[str, Any]] = field(default_factory=list)


class Tick:
    """One-candle persistence of a tick, moving on one hour each call."""

    def __init__(self, session_id: int, start: datetime) -> None:
        self.session_id = session_id
        self.candle = start

    def __call__(self, engine: Engine) -> None:
        self.candle += timedelta(hours=1)
        candle_time, close = self.candle, Decimal("50000.12")
        with write_transaction(engine) as db:
            locked = ledger.lock(db, self.session_id, skip_locked=True)
            assert locked is not None
            session, positions = locked.session, locked.positions
            now = utcnow()
            batch = ledger.Batch(db, session, positions)
            batch.set(candle_cursor=candle_time, last_tick_at=now)
            market_time = candle_time + timedelta(hours=1)
            marks = {session.symbol: Mark(close, candle_time)}
            batch.post(kind="fee", delta=Decimal("-0.01"), reason="Bench fee", held=held_quantities(positions),
                       positions_value=ledger.marked_value(positions, marks), now=now, market_time=market_time)
            equity = ledger.equity_of(session, positions, marks)
            batch.mark(marks=marks, equity=equity, market_time=market_time)
            batch.write(tick_rows=[{
                "session_id": self.session_id, "symbol": session.symbol,
                "candle_time": candle_time, "close_price": close, "decision": "hold",
                "detail": "bench", "processed_at": now, "market_time": market_time, "equity": equity,
                "units": session.units, "unit_value": session.unit_value,
                "performance_index": ledger.unit_state(session).performance_index,
                "ledger_version": session.version}])


def capture(engine: Engine, call: Callable[[], None]) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        seen.append((statement, dict(parameters) if isinstance(parameters, dict) else parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return seen


class Raw:
    """The floor: captured statements through pg8000 alone, each prepared once on this connection."""

    #: Replays of every Raw in the run share one count, so no two of them write the same candle time.
    replays = itertools.count(1)

    def __init__(self, url: str) -> None:
        u = make_url(url)
        self.conn = pg8000.connect(user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
                                   port=u.port or 5432, database=u.database)
        self.conn.autocommit = True
        self.prepared: dict[str, Any] = {}

    def replay(self, path: Path_) -> None:
        cursor = self.conn.cursor()
        shift = next(Raw.replays)
        for statement, parameters in path.captured:
            if not parameters:
                cursor.execute(statement)
                continue
            prepared = self.prepared.get(statement)
            if prepared is None:
                prepared = self.prepared[statement] = self.conn.prepare(statement)
            values = parameters
            if path.name == "tick persistence":  # a new candle each time: tick_log's unique key
                values = {k: (v + timedelta(days=3650 + shift) if isinstance(v, datetime) else v)
                          for k, v in parameters.items()}
            prepared.run(**values)
        cursor.execute(path.ending)

    def close(self) -> None:
        self.conn.close()


def with_position(engine: Engine, sid: int) -> None:
    """One open position on the account (its entry fee and reservation through the ledger)."""
    with write_transaction(engine) as db:
        locked = ledger.lock(db, sid)
        assert locked is not None
        p = Position(session_id=sid, symbol="BTCUSDT", side="long", status="open", entry_price=Decimal(50000),
                     quantity=Decimal("0.01"), cost=Decimal(500), stop_loss=Decimal(1), take_profit=Decimal(10**7),
                     entry_time=utcnow(), fees=Decimal("0.5"))
        db.add(p)
        db.flush()
        batch = ledger.Batch(db, locked.session, [p])
        batch.position_opened(cost=p.cost, fee=p.fees, reference=ledger.position_reference(p.id), now=utcnow())
        batch.write()


def capture_floor(engine: Engine, path: Path_) -> None:
    """The statements the floor replays: a write's from its run on the floor's account, a read's from itself."""
    path.captured = capture(engine, lambda: (path.floor_run or path.run)(engine))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    C.sigterm_as_interrupt()
    C.quiet_logs()
    with C.throwaway_database("postgres") as url:
        engine = get_engine(url)
        sid = open_session(engine, SPEC, initial_balance=Decimal(1_000_000)).session_id
        with_position(engine, sid)
        floor_sid = open_session(engine, FLOOR_SPEC, initial_balance=Decimal(1_000_000)).session_id
        with_position(engine, floor_sid)
        C.progress(f"loading {args.rows:,} ledger rows ...")
        C.load_ledger(engine, sid, args.rows)
        C.progress_done()
        start = datetime(2030, 1, 1, tzinfo=utcnow().tzinfo)

        def deposit(account: int) -> Callable[[Engine], None]:
            return lambda e: change_balance("deposit", Decimal(1), reason="bench", actor=ME, session_id=account,
                                            engine=e) and None

        def manual_set(account: int) -> Callable[[Engine], None]:
            return lambda e: change_balance("set", Decimal(2_000_000) + Decimal(random.randint(0, 999)),
                                            reason="bench set", actor=ME, session_id=account, engine=e) and None

        paths = [
            Path_("balance change", deposit(sid), "COMMIT", deposit(floor_sid)),
            Path_("manual set with reason", manual_set(sid), "COMMIT", manual_set(floor_sid)),
            Path_("tick persistence", Tick(sid, start), "COMMIT", Tick(floor_sid, start)),
            Path_("rehydrate", lambda e: open_session(e, SPEC) and None, "ROLLBACK"),
            Path_("GET /api/balance", lambda e: read_summary(sid, engine=e) and None, "ROLLBACK"),
        ]
        server = make_url(url)
        with WireCounter(server.host or "127.0.0.1", server.port or 5432) as wire:
            counted = get_engine(wire.url_for(url))
            for path in paths:  # warm (statements prepared), then counted
                path.run(counted)
                path.statements = len(capture(counted, lambda p=path: p.run(counted)))  # type: ignore[misc]
                before = wire.round_trips
                path.run(counted)
                path.trips = wire.round_trips - before
                if path.floor_run is not None:
                    path.floor_run(counted)
                capture_floor(counted, path)
            raw_counted = Raw(wire.url_for(url))
            for path in paths:
                raw_counted.replay(path)
                before = wire.round_trips
                raw_counted.replay(path)
                path.raw_trips = wire.round_trips - before
            raw_counted.close()
        counted.dispose()
        raw = Raw(url)
        cells: list[tuple[Path_, bool]] = [(p, r) for p in paths for r in (False, True)]
        total = args.warmup + args.iterations
        for i in range(total):
            if i % 20 == 0:
                C.progress(f"round {i + 1}/{total}")
            random.shuffle(cells)
            for path in paths:
                if path.floor_run is None:  # a read's floor reads what the path reads now (untimed)
                    capture_floor(engine, path)
            for path, is_raw in cells:
                started, cpu_started = time.perf_counter(), time.process_time()
                if is_raw:
                    raw.replay(path)
                else:
                    path.run(engine)
                elapsed = (time.perf_counter() - started) * 1000
                cpu = (time.process_time() - cpu_started) * 1000
                if i >= args.warmup:
                    (path.raw_times if is_raw else path.times).append(elapsed)
                    (path.raw_cpu if is_raw else path.cpu).append(cpu)
        C.progress_done()
        raw.close()
        dispose_engines()
    load = os.getloadavg()
    rows = []
    for p in paths:
        med, raw_med = C.median(p.times), C.median(p.raw_times)
        rows.append([p.name, f"{med:.2f}", f"{C.percentile(p.times, 95):.2f}", f"{raw_med:.2f}",
                     f"{med / raw_med:.2f}×", f"{C.median(p.cpu):.2f}", f"{C.median(p.raw_cpu):.2f}", p.statements,
                     p.trips, p.raw_trips])
    title = f"PostgreSQL, {args.rows:,} ledger rows, {args.iterations} rounds (interleaved, {args.warmup} warm-up)"
    print(C.table(["path", "median ms", "p95 ms", "raw floor ms", "vs floor", "cpu ms", "raw cpu ms", "statements",
                   "round trips", "raw trips"], rows, title=title))
    print(f"load average during the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{C.machine()}")


if __name__ == "__main__":
    main()
