"""``atb backtest``: the same engine and tick as live trading, over recorded candles, into a throwaway SQLite
database — so a backtest's numbers are what the bot would have booked, fees and all."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from chalicelib.accounting import max_drawdown
from chalicelib.bot.runner import replay_clock
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import DEFAULT_MAX_CANDLES_PER_TICK, CandleOutcome, TickSettings, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.engine import get_engine
from chalicelib.db.migrate import upgrade
from chalicelib.db.models import AccountBalance, Trade, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.money import ZERO, quantize_money
from chalicelib.trading.candles import Candle, format_time
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.strategies import Strategy, get_strategy


class BacktestError(ValueError):
    """The backtest cannot run as asked; one line says why."""


@dataclass(frozen=True)
class TradeRecord:
    """One closed trade of a backtest, as exported (money exact)."""

    entry_time: datetime
    exit_time: datetime
    side: str
    entry_price: Decimal
    exit_price: Decimal
    quantity: Decimal
    realized_pnl: Decimal
    fees: Decimal
    exit_reason: str

    @property
    def net(self) -> Decimal:
        """Profit after fees: ``realized_pnl − fees``."""
        return self.realized_pnl - self.fees

    @classmethod
    def of(cls, row: Trade) -> TradeRecord:
        return cls(row.entry_time, row.exit_time, row.side, row.entry_price, row.exit_price, row.quantity,
                   row.realized_pnl, row.fees, row.exit_reason)


@dataclass(frozen=True)
class LedgerRecord:
    """One ledger row of a backtest, as exported."""

    id: int
    market_time: datetime
    kind: str
    delta: Decimal
    total_balance: Decimal
    available_balance: Decimal
    reserved_balance: Decimal
    equity: Decimal
    reference: str | None
    reason: str

    @classmethod
    def of(cls, row: AccountBalance) -> LedgerRecord:
        return cls(row.id, row.market_time, row.kind, row.delta, row.total_balance, row.available_balance,
                   row.reserved_balance, row.equity, row.reference, row.update_reason)


@dataclass(frozen=True)
class BacktestSummary:
    strategy: str
    symbol: str
    timeframe: str
    first_candle: datetime
    last_candle: datetime
    candles: int
    initial_balance: Decimal
    final_balance: Decimal
    final_equity: Decimal
    max_drawdown_pct: Decimal
    trades: int
    winning_trades: int
    fees: Decimal
    buy_and_hold_pct: Decimal
    verified: bool
    data: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    #: every candle's outcome (decision, fills, balance, equity at its close), oldest first
    outcomes: tuple[CandleOutcome, ...] = ()
    trade_records: tuple[TradeRecord, ...] = ()
    ledger: tuple[LedgerRecord, ...] = ()
    #: the close of the candle before the first tested one
    start_close: Decimal = ZERO

    @property
    def return_pct(self) -> Decimal:
        if self.initial_balance == 0:
            return ZERO
        return (self.final_equity - self.initial_balance) / self.initial_balance * 100


def select_window(candles: Sequence[Candle], step: int, *, days: int | None, start: datetime | None,
                  end: datetime | None) -> tuple[int, int]:
    """Indexes ``(first, stop)`` of the candles to test: the last ``days``, or those opened in ``[start, end)``.
    The candle before ``first`` is the session's starting cursor, so ``first`` is at least 1."""
    if days is not None and (start is not None or end is not None):
        raise BacktestError("give either --days or --from/--to, not both")
    if days is not None:
        if days < 1:
            raise BacktestError("--days must be at least 1")
        wanted = max(1, (days * 86_400) // step)
        first, stop = max(0, len(candles) - wanted), len(candles)
        if first < 1:
            raise BacktestError(f"the data holds {len(candles)} candles; ask for fewer days")
        return first, stop
    times = [c.open_time for c in candles]
    first = bisect_left(times, start) if start is not None else 1
    stop = bisect_left(times, end) if end is not None else len(candles)
    first = max(first, 1)
    if stop <= first:
        span = f"{format_time(candles[0].open_time)} → {format_time(candles[-1].open_time)}" if candles else "nothing"
        raise BacktestError(f"no candles to test between the dates given (the data holds {span})")
    return first, stop


def run_backtest(
    strategy: str | Strategy,
    symbol: str = "BTCUSDT",
    timeframe: str = "1h",
    *,
    days: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    initial_balance: Decimal,
    data: Path | None = None,
    feed: ReplayFeed | None = None,
    params: Mapping[str, Any] | None = None,
    settings: TickSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestSummary:
    """Replay recorded candles (the last ``days``, or those opened in ``[start, end)``) through the engine;
    ``progress(done, total)`` after each tick. ``params`` replace the strategy's defaults; ``feed`` replaces the
    recording read from ``data`` (``atb check`` replays changed futures). ``strategy`` is a registered name, or a
    strategy object of a registered name (the trainer's freshly fitted ``ml_basic``)."""
    name = strategy if isinstance(strategy, str) else strategy.name
    spec = BotSpec(strategy=name, symbol=symbol, timeframe=timeframe, exchange="replay")
    if isinstance(strategy, str):
        strategy_obj = get_strategy(spec.strategy, **(params or {}))
    elif params:
        raise BacktestError("parameters apply to a strategy given by name, not to a strategy object")
    else:
        strategy_obj = strategy
    feed = feed or ReplayFeed(data, symbol=spec.symbol, timeframe=timeframe)
    candles = feed.all_candles(spec.symbol, timeframe)
    step = spec_step(timeframe)
    if days is None and start is None and end is None:
        days = 30
    first_index, stop_index = select_window(candles, step, days=days, start=start, end=end)
    if stop_index < len(candles):
        feed = ReplayFeed.from_candles(candles[:stop_index], symbol=spec.symbol, timeframe=timeframe,
                                       label=feed.describe())
    tested = candles[first_index:stop_index]
    settings = settings or TickSettings(max_candles_per_tick=DEFAULT_MAX_CANDLES_PER_TICK)
    clock = replay_clock(feed, spec.symbol, timeframe, settings.max_candles_per_tick)
    outcomes: list[CandleOutcome] = []
    with tempfile.TemporaryDirectory(prefix="atb-backtest-") as tmp:
        database = Path(tmp) / "backtest.sqlite3"
        _copy_database(_migrated_template(), database)
        engine = get_engine(f"sqlite:///{database}")
        try:
            opening = open_session(engine, spec, initial_balance=initial_balance, resume=False,
                                   start_cursor=candles[first_index - 1].open_time)
            while True:
                result = tick_session(engine, opening.session_id, feed, clock=clock, strategy=strategy_obj,
                                      settings=settings)
                if result.status != "applied":
                    if result.status in ("bad_candles", "feed_error", "error"):
                        raise BacktestError(result.message)
                    break
                outcomes.extend(result.outcomes)
                if progress is not None:
                    progress(len(outcomes), len(tested))
            with read_transaction(engine) as db:
                session = db.get(TradingSession, opening.session_id)
                assert session is not None
                trades = tuple(TradeRecord.of(t) for t in db.execute(
                    select(Trade).where(Trade.session_id == session.id).order_by(Trade.exit_time, Trade.id)
                ).scalars())
                ledger = tuple(LedgerRecord.of(r) for r in db.execute(
                    select(AccountBalance).where(AccountBalance.session_id == session.id).order_by(AccountBalance.id)
                ).scalars())
                fees = -sum((r.delta for r in ledger if r.kind == "fee"), ZERO)
                final_balance = session.total_balance
            from chalicelib.verify import verify

            verified = verify(engine).ok
        finally:
            engine.dispose()
    first, last = tested[0], tested[-1]
    equity = outcomes[-1].equity if outcomes else initial_balance
    deepest = max_drawdown([initial_balance, *(o.equity for o in outcomes)])
    buy_hold = (last.close - first.close) / first.close * 100 if first.close else ZERO
    return BacktestSummary(
        strategy=spec.strategy, symbol=spec.symbol, timeframe=timeframe, first_candle=first.open_time,
        last_candle=last.open_time, candles=len(tested), initial_balance=initial_balance,
        final_balance=final_balance, final_equity=equity, max_drawdown_pct=quantize_money(deepest.depth * 100),
        trades=len(trades), winning_trades=sum(1 for t in trades if t.net > 0), fees=fees,
        buy_and_hold_pct=quantize_money(buy_hold), verified=verified, data=feed.describe(),
        params=dict(params or {}), outcomes=tuple(outcomes), trade_records=trades, ledger=ledger,
        start_close=candles[first_index - 1].close,
    )


@functools.cache
def _migrated_template() -> Path:
    """An empty database at the schema's head, made once per process by the migrations themselves and copied for
    each backtest (``atb check`` and ``atb optimize`` run dozens): the schema is production's, not a shortcut."""
    folder = Path(tempfile.mkdtemp(prefix="atb-backtest-schema-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "schema.sqlite3"
    engine = get_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path


def _copy_database(source: Path, target: Path) -> None:
    for suffix in ("", "-wal"):  # a WAL file left beside it holds part of the schema
        part = source.with_name(source.name + suffix)
        if part.exists():
            shutil.copyfile(part, target.with_name(target.name + suffix))


def spec_step(timeframe: str) -> int:
    from chalicelib.trading.candles import timeframe_to_timedelta

    return int(timeframe_to_timedelta(timeframe).total_seconds())
