"""The cost of one tick as the ledger grows: one new candle, the strategy, stop/target checks, persistence.

For each database (PostgreSQL, SQLite), each history size (existing ledger rows in the session) and each number
of open positions, this times:

* tick       — ``tick_session`` for one new closed candle, end to end (the candles come from an in-memory feed
               prepared up front, so no network time): read the cursor, lock, rehydrate positions, decide
               (``ml_basic``'s model is evaluated; the bench strategy then holds so the position count stays put),
               check every position's stop/target, write the tick row, advance the cursor, commit.
  tx         — the part of that tick spent inside its write transaction.
* persist    — persistence of a one-candle tick that books one ledger row, through the same chalicelib calls the
               engine makes: lock session, read open positions, the ledger's batch (``ledger.Batch``: insert ledger
               row, update session), insert tick row, commit.
  raw floor  — PostgreSQL only: the same statements sent raw through pg8000 (no ORM), the floor to compare with.
* rehydrate  — ``open_session`` finding the active session: its balance and peak (cached on the session row) and
               its open positions.

Statements are counted with SQLAlchemy's ``before_cursor_execute``; round trips are pg8000 socket flushes (each
one waits for the server), so they include BEGIN, COMMIT and the pool's pre-ping; SQLite has none (in-process).

    .venv/bin/python bench/tick.py                       # full set: 0, 10k, 100k, 1M rows × 0, 1, 20 positions
    .venv/bin/python bench/tick.py --quick               # smoke run: 0 and 10k rows, few iterations
    .venv/bin/python bench/tick.py --rows 0,100000 --positions 1 --db postgres --iterations 300

Each run makes its own databases (``atb_bench_*`` on the server, a temp file for SQLite) and drops them at the
end, also on error and Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

from chalicelib import ledger
from chalicelib.bot import tick as tick_module
from chalicelib.bot.runner import replay_clock
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import TickSettings, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.engine import get_engine
from chalicelib.db.models import Position
from chalicelib.db.types import utcnow
from chalicelib.db.uow import write_transaction
from chalicelib.ledger import held_quantities
from chalicelib.money import quantize_money
from chalicelib.trading import strategies
from chalicelib.trading.candles import Candle
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies import Decision, Hold, get_strategy
from chalicelib.valuation import Mark

FULL_ROWS = (0, 10_000, 100_000, 1_000_000)
FULL_POSITIONS = (0, 1, 20)
SYMBOL, TIMEFRAME = "BTCUSDT", "1h"
INITIAL = Decimal(1_000_000)


class ModelThenHold:
    """Evaluates ``ml_basic``'s model on every candle (so the strategy's cost is in the tick) and then holds,
    so the number of open positions stays what the row of the table says."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inner: Any = get_strategy("ml_basic")
        self.warmup = self.inner.warmup

    def decide(self, candles: Sequence[Candle], position: PositionView | None) -> Decision:
        return Hold(reason=f"p(up)={self.inner.probability(candles):.3f}")


@dataclass
class Bot:
    positions: int
    session_id: int
    spec: BotSpec
    strategy: ModelThenHold
    rows: int = 0


@dataclass
class Cell:
    db: str
    rows: int
    positions: int
    tick: list[float]
    tx: list[float]
    statements: list[int]
    trips: list[int]
    persist: list[float]
    persist_statements: list[int]
    persist_trips: list[int]
    raw: list[float]
    raw_trips: list[int]
    rehydrate: list[float]
    rehydrate_statements: list[int]


_tx_times: list[float] = []


@contextlib.contextmanager
def _timed_write_transaction(engine: Any = None) -> Iterator[Any]:
    started = time.perf_counter()
    try:
        with write_transaction(engine) as db:
            yield db
    finally:
        _tx_times.append((time.perf_counter() - started) * 1000)


_cells: list[str] = []


def make_bot(engine: Any, k: int, candles: Sequence[Candle], start: int, tag: str) -> Bot:
    strategy = ModelThenHold(f"bench_hold_{tag}")
    strategies._REGISTRY[strategy.name] = lambda: strategy  # a bot's strategy must be registered
    # One account per cell: a bot is (symbol, timeframe, exchange, mode), so each cell is labelled with another
    # exchange id ccxt knows (the candles are the replay's all the same).
    import ccxt

    _cells.append(tag)
    spec = BotSpec(strategy=strategy.name, symbol=SYMBOL, timeframe=TIMEFRAME, exchange=ccxt.exchanges[len(_cells)])
    sid = open_session(engine, spec, initial_balance=INITIAL, resume=False,
                       start_cursor=candles[start].open_time).session_id
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        now = utcnow()
        held: list[Position] = []
        price = candles[start].close
        for _ in range(k):
            qty = Decimal("0.001")
            p = Position(session_id=sid, symbol=SYMBOL, side="long", status="open", entry_price=price, quantity=qty,
                         cost=quantize_money(price * qty), stop_loss=Decimal(1), take_profit=Decimal(10_000_000),
                         entry_time=candles[start].open_time, fees=Decimal("0.02"))
            db.add(p)
            db.flush()
            held.append(p)
            batch = ledger.Batch(db, session, held)
            batch.position_opened(cost=p.cost, fee=p.fees, reference=ledger.position_reference(p.id), now=now)
            batch.write()
    return Bot(k, sid, spec, strategy)


def persist_once(engine: Any, bot: Bot, candle_time: datetime, close: Decimal) -> None:
    """One candle's persistence with one ledger row, through the engine's own calls."""
    with write_transaction(engine) as db:
        locked = ledger.lock(db, bot.session_id, skip_locked=True)  # the session and its open positions
        assert locked is not None
        session, positions = locked.session, locked.positions
        now = utcnow()
        book = ledger.Batch(db, session, positions)  # as tick._apply: rows computed under the lock, written at the end
        book.set(candle_cursor=candle_time, last_tick_at=now)
        market_time = candle_time + timedelta(hours=1)
        value = ledger.marked_value(positions, {session.symbol: Mark(close, candle_time)})
        book.post(kind="fee", delta=Decimal("-0.01"), reason="Bench fee", reference=f"bench:{candle_time.isoformat()}",
                  held=held_quantities(positions), positions_value=value, now=now, market_time=market_time)
        equity = ledger.equity_of(session, positions, {session.symbol: Mark(close, candle_time)})
        book.mark(marks={session.symbol: Mark(close, candle_time)}, equity=equity, market_time=market_time)
        book.write(tick_rows=[{"session_id": bot.session_id, "symbol": session.symbol,
                               "candle_time": candle_time, "close_price": close,
                               "decision": "hold", "detail": "bench persist", "processed_at": now,
                               "market_time": market_time, "equity": equity, "units": session.units,
                               "unit_value": session.unit_value,
                               "performance_index": ledger.unit_state(session).performance_index,
                               "ledger_version": session.version}])


_RAW_INSERT_LEDGER = (
    "INSERT INTO account_balances (session_id, base_currency, kind, delta, total_balance, available_balance, "
    "reserved_balance, asset_balances, reference, units, unit_value, performance_index, equity, market_time, "
    "last_updated, updated_by, updated_by_label, update_reason) "
    "VALUES (:sid, :cur, 'fee', :delta, :total, :avail, :res, CAST(:assets AS JSON), :ref, :units, :value, :index, "
    ":equity, :mt, :now, 'system', NULL, 'Bench fee') RETURNING id"
)


def persist_raw(conn: Any, bot: Bot, candle_time: datetime, close: Decimal) -> None:
    """The same statements as :func:`persist_once`, raw through pg8000 (the floor). The unit arithmetic is the
    same calls; only the SQL is hand-written."""
    from chalicelib import accounting

    conn.run("BEGIN")
    [row] = conn.run("SELECT id, total_balance, available_balance, reserved_balance, units, unit_value, "
                     "peak_unit_value, series_base, version, base_currency, status, strategy, candle_cursor "
                     "FROM trading_sessions WHERE id = :id FOR UPDATE SKIP LOCKED", id=bot.session_id)
    positions = conn.run("SELECT id, symbol, quantity, cost, stop_loss, take_profit, entry_price FROM positions "
                         "WHERE session_id = :sid AND status = 'open' ORDER BY id", sid=bot.session_id)
    total, reserved = row[1] - Decimal("0.01"), row[3]
    avail = total - reserved
    held = sum((p[2] for p in positions), Decimal(0))
    equity = avail + quantize_money(held * close)
    state = accounting.after_trading(accounting.UnitState(row[4], row[5], row[6], row[7]), equity)
    assets = {"USD": f"{avail:.8f}", **({"BTC": format(held.normalize(), "f")} if held else {})}
    now = utcnow()
    market_time = candle_time + timedelta(hours=1)
    conn.run(_RAW_INSERT_LEDGER, sid=bot.session_id, cur=row[9], delta=Decimal("-0.01"), total=total, avail=avail,
             res=reserved, assets=json.dumps(assets), ref=f"raw:{candle_time.isoformat()}", units=state.units,
             value=state.unit_value, index=state.performance_index, equity=equity, mt=market_time, now=now)
    conn.run("INSERT INTO tick_log (session_id, symbol, candle_time, close_price, decision, detail, processed_at, "
             "market_time, equity, units, unit_value, performance_index, ledger_version) VALUES (:sid, 'BTCUSDT', :t, "
             ":c, 'hold', 'bench raw', :now, :mt, :e, :u, :v, :i, :lv) RETURNING id", sid=bot.session_id, t=candle_time,
             c=close,
             now=now, mt=market_time, e=equity, u=state.units, v=state.unit_value, i=state.performance_index,
             lv=row[8] + 1)
    conn.run("UPDATE trading_sessions SET total_balance = :t, available_balance = :a, reserved_balance = :r, "
             "unit_value = :v, peak_unit_value = :p, version = :n, marks = CAST(:c AS json), market_time = :mt, "
             "candle_cursor = :cc, last_tick_at = :now WHERE id = :id",
             t=total, a=avail, r=reserved, v=state.unit_value, p=state.peak_unit_value, n=row[8] + 1,
             c=json.dumps({"BTCUSDT": {"close": format(close, "f"), "cursor": candle_time.isoformat()}}),
             mt=market_time, cc=candle_time, now=now, id=bot.session_id)
    conn.run("COMMIT")


class Measured:
    """One (history size, open positions) cell: its session, where its cursor is, and its samples."""

    def __init__(self, kind: str, url: str, engine: Any, bot: Bot, feed: ReplayFeed, candles: Sequence[Candle],
                 cursor_index: int) -> None:
        self.kind, self.url, self.engine, self.bot, self.feed, self.candles = kind, url, engine, bot, feed, candles
        self.cursor = cursor_index  # index of the session's cursor candle
        self.clock = replay_clock(feed, SYMBOL, TIMEFRAME, 1)
        self.settings = TickSettings()
        self.cell = Cell(kind, bot.rows, bot.positions, [], [], [], [], [], [], [], [], [], [], [])
        self.raw_conn = C.pg_connect(url) if kind == "postgres" else None

    def close(self) -> None:
        if self.raw_conn is not None:
            self.raw_conn.close()

    def tick(self, keep: bool) -> None:
        _tx_times.clear()
        with C.counting(self.engine) as counted:
            started = time.perf_counter()
            result = tick_session(self.engine, self.bot.session_id, self.feed, clock=self.clock,
                                  strategy=self.bot.strategy, settings=self.settings)
            elapsed = (time.perf_counter() - started) * 1000
        if result.status != "applied" or result.candles_applied != 1:
            raise SystemExit(f"unexpected tick result: {result.status} {result.message}")
        self.cursor += 1
        if keep:
            self.cell.tick.append(elapsed)
            self.cell.tx.append(sum(_tx_times))
            self.cell.statements.append(counted.statements)
            self.cell.trips.append(counted.round_trips)

    def persist(self, keep: bool) -> None:
        c = self.candles[self.cursor + 1]
        with C.counting(self.engine) as counted:
            started = time.perf_counter()
            persist_once(self.engine, self.bot, c.open_time, quantize_money(c.close))
            elapsed = (time.perf_counter() - started) * 1000
        self.cursor += 1
        if keep:
            self.cell.persist.append(elapsed)
            self.cell.persist_statements.append(counted.statements)
            self.cell.persist_trips.append(counted.round_trips)

    def raw(self, keep: bool) -> None:
        if self.raw_conn is None:
            return
        c = self.candles[self.cursor + 1]
        before = C.ROUND_TRIPS.count
        started = time.perf_counter()
        persist_raw(self.raw_conn, self.bot, c.open_time, quantize_money(c.close))
        elapsed = (time.perf_counter() - started) * 1000
        self.cursor += 1
        if keep:
            self.cell.raw.append(elapsed)
            self.cell.raw_trips.append(C.ROUND_TRIPS.count - before)

    def rehydrate(self, keep: bool) -> None:
        with C.counting(self.engine) as counted:
            started = time.perf_counter()
            opening = open_session(self.engine, self.bot.spec)
            elapsed = (time.perf_counter() - started) * 1000
        assert opening.how == "found" and len(opening.positions) == self.bot.positions
        if keep:
            self.cell.rehydrate.append(elapsed)
            self.cell.rehydrate_statements.append(counted.statements)


def run(kind: str, rows: Sequence[int], positions: Sequence[int], iterations: int, warmup: int,
        verify_after: bool) -> list[Cell]:
    """One database holding a session per (history size, open positions) cell; the cells are then measured
    round-robin (one tick, one persist, one raw, one rehydrate of each cell per round, in a shuffled order), so a
    change in the machine's background load hits every cell alike instead of skewing the later ones."""
    feed = ReplayFeed()
    candles = feed.all_candles(SYMBOL, TIMEFRAME)
    start = ModelThenHold("x").warmup + 5
    rng = random.Random(7)
    with C.throwaway_database(kind) as url:
        engine = get_engine(url)
        measured: list[Measured] = []
        try:
            for n in sorted(rows):
                for k in positions:
                    bot = make_bot(engine, k, candles, start, tag=f"{n}_{k}")
                    if n:
                        C.progress(f"{kind}: loading {n:,} ledger rows into session #{bot.session_id} ...")
                        loaded = C.load_ledger(engine, bot.session_id, n)
                        C.progress_done()
                        print(f"  {kind}: loaded {n:,} rows in {loaded.seconds:.1f} s "
                              f"({n / max(loaded.seconds, 1e-9):,.0f} rows/s)", file=sys.stderr)
                    bot.rows = n
                    measured.append(Measured(kind, url, engine, bot, feed, candles, start))
            if kind == "postgres":
                with contextlib.closing(C.pg_connect(url)) as conn:
                    conn.run("VACUUM ANALYZE")
            tick_module.write_transaction = _timed_write_transaction
            steps = ("tick", "persist", "raw", "rehydrate")
            for i in range(warmup + iterations):
                if i % 10 == 0:
                    C.progress(f"{kind}: round {i + 1}/{warmup + iterations} over {len(measured)} cells ...")
                order = [(m, step) for m in measured for step in steps]
                rng.shuffle(order)
                for m, step in order:
                    getattr(m, step)(i >= warmup)
            C.progress_done()
        finally:
            tick_module.write_transaction = write_transaction
            for m in measured:
                m.close()
        if verify_after:
            from chalicelib.verify import verify

            C.progress(f"{kind}: verifying the ledger ...")
            report = verify(engine)
            C.progress_done()
            print(f"  {kind}: atb db verify -> {'ok' if report.ok else 'FAILED'}", file=sys.stderr)
            if not report.ok:
                for s in report.sessions:
                    for p in s.problems[:3]:
                        print(f"    #{s.session_id}: {p}", file=sys.stderr)
    return [m.cell for m in measured]


def print_tables(cells: list[Cell]) -> None:
    for kind in C.KINDS:
        mine = [c for c in cells if c.db == kind]
        if not mine:
            continue
        pg = kind == "postgres"
        headers = ["ledger rows", "open pos", "tick med", "tick p95", "tx med", "stmts", "round trips",
                   "persist med", "persist p95", "p.stmts", "raw floor", "rehydrate med", "rehydrate p95", "r.stmts"]
        table_rows = []
        for c in mine:
            table_rows.append([
                c.rows, c.positions, C.median(c.tick), C.percentile(c.tick, 95), C.median(c.tx),
                _count(c.statements), _count(c.trips) if pg else "-", C.median(c.persist),
                C.percentile(c.persist, 95), _count(c.persist_statements),
                C.median(c.raw) if pg else "-", C.median(c.rehydrate), C.percentile(c.rehydrate, 95),
                _count(c.rehydrate_statements),
            ])
        print()
        print(C.table(headers, table_rows, title=f"{kind}: one-candle tick, times in ms (n={len(mine[0].tick)} each)"))
        if pg and mine[0].raw_trips:
            print(f"round trips: tick {_count(mine[0].trips)} (incl. pre-pings), persist "
                  f"{_count(mine[0].persist_trips)} via SQLAlchemy, {_count(mine[0].raw_trips)} raw")
        # flatness: the largest history vs the smallest, per position count
        by_k: dict[int, list[Cell]] = {}
        for c in mine:
            by_k.setdefault(c.positions, []).append(c)
        parts = []
        for k, cs in sorted(by_k.items()):
            lo, hi = min(cs, key=lambda c: c.rows), max(cs, key=lambda c: c.rows)
            if lo is not hi:
                parts.append(f"{k} pos: tick ×{C.median(hi.tick) / C.median(lo.tick):.2f}, persist "
                             f"×{C.median(hi.persist) / C.median(lo.persist):.2f}, rehydrate "
                             f"×{C.median(hi.rehydrate) / C.median(lo.rehydrate):.2f}")
        if parts:
            big = max(c.rows for c in mine)
            small = min(c.rows for c in mine)
            print(f"flatness ({big:,} vs {small:,} rows, medians): " + "; ".join(parts))


def _count(values: list[int]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(str(n) for n in FULL_ROWS),
                        help="comma-separated history sizes (existing ledger rows per session)")
    parser.add_argument("--positions", default=",".join(str(k) for k in FULL_POSITIONS),
                        help="comma-separated open-position counts")
    parser.add_argument("--db", choices=["both", *C.KINDS], default="both")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--sqlite-max-rows", type=int, default=None,
                        help="skip SQLite history sizes above this (default: none skipped)")
    parser.add_argument("--verify", action="store_true", help="run atb db verify on each database at the end")
    parser.add_argument("--quick", action="store_true", help="smoke run: 0 and 10,000 rows, 20 iterations")
    args = parser.parse_args()
    rows = [int(x.replace("_", "")) for x in args.rows.split(",") if x.strip()]
    positions = [int(x) for x in args.positions.split(",") if x.strip()]
    if args.quick:
        rows, args.iterations, args.warmup, args.verify = [0, 10_000], 20, 5, True
    C.sigterm_as_interrupt()
    C.quiet_logs()
    print(f"machine: {C.machine()}")
    print(f"iterations: {args.iterations} per cell after {args.warmup} warm-up rounds, cells interleaved")
    cells: list[Cell] = []
    try:
        for kind in (C.KINDS if args.db == "both" else (args.db,)):
            sizes = [n for n in rows if kind != "sqlite" or args.sqlite_max_rows is None
                     or n <= args.sqlite_max_rows]
            cells += run(kind, sizes, positions, args.iterations, args.warmup, args.verify)
    except KeyboardInterrupt:
        C.progress_done()
        print("interrupted; databases dropped", file=sys.stderr)
        if cells:
            print_tables(cells)
        raise SystemExit(130) from None
    print_tables(cells)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
