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
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from chalicelib.accounting import max_drawdown
from chalicelib.bot.runner import replay_clock
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import DEFAULT_MAX_CANDLES_PER_TICK, CandleOutcome, Clock, TickSettings, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.engine import get_engine
from chalicelib.db.migrate import upgrade
from chalicelib.db.models import AccountBalance, Trade, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.money import ZERO, quantize_money
from chalicelib.trading.candles import Candle, format_time
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.strategies import Strategy, get_strategy
from chalicelib.trading.symbols import split_pairs
from chalicelib.valuation import to_account_currency


class BacktestError(ValueError):
    """The backtest cannot run as asked; one line says why."""


@dataclass(frozen=True)
class TradeRecord:
    """One closed trade of a backtest, as exported (money exact)."""

    entry_time: datetime
    exit_time: datetime
    symbol: str
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
        return cls(row.entry_time, row.exit_time, row.symbol, row.side, row.entry_price, row.exit_price, row.quantity,
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
class PairSummary:
    """One pair of a several-pair backtest, from its closed trades (read by symbol)."""

    symbol: str
    trades: int
    winning_trades: int
    realized_pnl: Decimal  # gross, before fees
    fees: Decimal  # entry and exit fees of the closed trades
    buy_and_hold_pct: Decimal  # the pair alone, first tested close to last, no fees

    @property
    def net(self) -> Decimal:
        return self.realized_pnl - self.fees

    @property
    def win_rate_pct(self) -> Decimal | None:
        return quantize_money(Decimal(self.winning_trades) / self.trades * 100) if self.trades else None


@dataclass(frozen=True)
class Basket:
    """Buy and hold of an equal-weight basket, the baseline of a several-pair backtest: the initial capital split
    equally across the pairs, each share spent at the first tested candle's close (in dollars) with the broker's fee
    on the notional — ``quantity = share / (close × (1 + fee_rate))``, the fee ``share − quantity × close`` — and
    held to the end. Exact ``Decimal``; money quantised only when shown."""

    quantities: dict[str, Decimal]
    fees: Decimal
    #: its value at each tested candle time's close (the last close of every pair at that time), oldest first
    values: tuple[Decimal, ...]

    @property
    def final_value(self) -> Decimal:
        return self.values[-1] if self.values else ZERO

    def return_pct(self, initial: Decimal) -> Decimal:
        return quantize_money((self.final_value - initial) / initial * 100) if initial else ZERO


def equal_weight_basket(initial: Decimal, closes: Sequence[Mapping[str, Decimal]], fee_rate: Decimal) -> Basket:
    """The basket bought at ``closes[0]`` (every pair's first tested close) and valued at each later ``closes[i]``
    (a pair missing from one is valued at its last close before)."""
    first = closes[0]
    share = initial / len(first)
    quantities = {s: share / (close * (1 + fee_rate)) for s, close in first.items()}
    fees = sum((share - q * first[s] for s, q in quantities.items()), ZERO)
    last: dict[str, Decimal] = {}
    values = []
    for at in closes:
        last.update(at)
        values.append(quantize_money(sum((q * last[s] for s, q in quantities.items()), ZERO)))
    return Basket(quantities, quantize_money(fees), tuple(values))


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
    #: several pairs: each pair's figures (in the bot's symbol order) and the equal-weight basket baseline
    pairs: tuple[PairSummary, ...] = ()
    basket: Basket | None = None
    #: candle times tested (= candles for one pair)
    candle_times: int = 0

    @property
    def symbols(self) -> tuple[str, ...]:
        return split_pairs(self.symbol)

    @property
    def return_pct(self) -> Decimal:
        if self.initial_balance == 0:
            return ZERO
        return (self.final_equity - self.initial_balance) / self.initial_balance * 100


def select_window(times: Sequence[datetime], step: int, *, days: int | None, start: datetime | None,
                  end: datetime | None) -> tuple[int, int]:
    """Indexes ``(first, stop)`` of the candle open times to test: the last ``days``, or those opened in
    ``[start, end)``. The time before ``first`` is the session's starting cursor, so ``first`` is at least 1."""
    if days is not None and (start is not None or end is not None):
        raise BacktestError("give either --days or --from/--to, not both")
    if days is not None:
        if days < 1:
            raise BacktestError("--days must be at least 1")
        wanted = max(1, (days * 86_400) // step)
        first, stop = max(0, len(times) - wanted), len(times)
        if first < 1:
            raise BacktestError(f"the data holds {len(times)} candles; ask for fewer days")
        return first, stop
    first = bisect_left(times, start) if start is not None else 1
    stop = bisect_left(times, end) if end is not None else len(times)
    first = max(first, 1)
    if stop <= first:
        span = f"{format_time(times[0])} → {format_time(times[-1])}" if times else "nothing"
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
    data: Path | Mapping[str, str | Path] | None = None,
    feed: ReplayFeed | None = None,
    params: Mapping[str, Any] | None = None,
    settings: TickSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestSummary:
    """Replay recorded candles (the last ``days``, or those opened in ``[start, end)``) through the engine;
    ``progress(done, total)`` after each tick. ``params`` replace the strategy's defaults; ``feed`` replaces the
    recording read from ``data`` (``atb check`` replays changed futures). ``strategy`` is a registered name, or a
    strategy object of a registered name (the trainer's freshly fitted ``ml_basic``).

    ``symbol`` may name several pairs (``BTCUSDT,ETHUSDT``): one wallet trades them all, each pair's candles from
    its bundled file or ``data[SYMBOL]``; the window is chosen on the candle times of all of them."""
    name = strategy if isinstance(strategy, str) else strategy.name
    spec = BotSpec(strategy=name, symbol=symbol, timeframe=timeframe, exchange="replay")
    if isinstance(strategy, str):
        strategy_obj = get_strategy(spec.strategy, **(params or {}))
    elif params:
        raise BacktestError("parameters apply to a strategy given by name, not to a strategy object")
    else:
        strategy_obj = strategy
    symbols = spec.symbols
    if feed is None:
        if isinstance(data, (str, Path)) and len(symbols) > 1:
            raise BacktestError("with several pairs, say which one each file holds: --data SYMBOL=FILE")
        files = {symbols[0]: data} if isinstance(data, (str, Path)) else dict(data or {})
        feed = ReplayFeed.several(symbols, timeframe, data=files)
    series = {s: feed.all_candles(s, timeframe) for s in symbols}
    times = sorted({c.open_time for candles in series.values() for c in candles})
    step = spec_step(timeframe)
    if days is None and start is None and end is None:
        days = 30
    first_index, stop_index = select_window(times, step, days=days, start=start, end=end)
    start_cursor, last_time = times[first_index - 1], times[stop_index - 1]
    tested = {s: [c for c in candles if start_cursor < c.open_time <= last_time] for s, candles in series.items()}
    total = sum(len(c) for c in tested.values())
    settings = settings or TickSettings(max_candles_per_tick=DEFAULT_MAX_CANDLES_PER_TICK)
    clock = _window_clock(replay_clock(feed, spec.symbol, timeframe, settings.max_candles_per_tick), last_time,
                          timedelta(seconds=step))
    outcomes: list[CandleOutcome] = []
    with tempfile.TemporaryDirectory(prefix="atb-backtest-") as tmp:
        database = Path(tmp) / "backtest.sqlite3"
        _copy_database(_migrated_template(), database)
        engine = get_engine(f"sqlite:///{database}")
        try:
            opening = open_session(engine, spec, initial_balance=initial_balance, resume=False,
                                   start_cursor=start_cursor)
            while True:
                result = tick_session(engine, opening.session_id, feed, clock=clock, strategy=strategy_obj,
                                      settings=settings)
                if result.status != "applied":
                    if result.status in ("bad_candles", "feed_error", "error"):
                        raise BacktestError(result.message)
                    break
                outcomes.extend(result.outcomes)
                if progress is not None:
                    progress(len(outcomes), total)
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
    equity = outcomes[-1].equity if outcomes else initial_balance
    deepest = max_drawdown([initial_balance, *(o.equity for o in outcomes)])
    one = series[symbols[0]]
    before = [c for c in one if c.open_time <= start_cursor]
    start_close = before[-1].close if before else ZERO
    pairs: tuple[PairSummary, ...] = ()
    basket: Basket | None = None
    if len(symbols) == 1:
        first, last = tested[symbols[0]][0], tested[symbols[0]][-1]
        buy_hold = quantize_money(_change_pct(first.close, last.close))
    else:
        pairs = tuple(_pair_summary(s, tested[s], trades) for s in symbols)
        basket = equal_weight_basket(initial_balance, _closes_by_time(tested, symbols), settings.broker.fee_rate)
        buy_hold = basket.return_pct(initial_balance)
    return BacktestSummary(
        strategy=spec.strategy, symbol=spec.symbol, timeframe=timeframe, first_candle=times[first_index],
        last_candle=last_time, candles=total, initial_balance=initial_balance,
        final_balance=final_balance, final_equity=equity, max_drawdown_pct=quantize_money(deepest.depth * 100),
        trades=len(trades), winning_trades=sum(1 for t in trades if t.net > 0), fees=fees,
        buy_and_hold_pct=buy_hold, verified=verified, data=feed.describe(),
        params=dict(params or {}), outcomes=tuple(outcomes), trade_records=trades, ledger=ledger,
        start_close=start_close, pairs=pairs, basket=basket, candle_times=stop_index - first_index,
    )


def _window_clock(clock: Clock, last_time: datetime, step: timedelta) -> Clock:
    """``clock`` that never reveals a candle opened after ``last_time``: the replay ends with the window."""
    end = last_time + step

    def bounded(cursor: datetime | None) -> datetime | None:
        if cursor is not None and cursor >= last_time:
            return None
        now = clock(cursor)
        return None if now is None else min(now, end)

    return bounded


def _change_pct(first: Decimal, last: Decimal) -> Decimal:
    return (last - first) / first * 100 if first else ZERO


def _pair_summary(symbol: str, tested: Sequence[Candle], trades: Sequence[TradeRecord]) -> PairSummary:
    """A pair's closed trades summed by the attribution's one rule (``chalicelib.performance.figures``: a win is a
    trade whose net is above zero), beside the pair's own buy and hold."""
    from chalicelib.performance import TradeLine, figures

    mine = figures(symbol, [TradeLine(None, None, t.symbol, t.realized_pnl, t.fees) for t in trades
                            if t.symbol == symbol], None)
    return PairSummary(
        symbol=symbol, trades=mine.trades, winning_trades=mine.wins, realized_pnl=mine.realized_pnl, fees=mine.fees,
        buy_and_hold_pct=quantize_money(_change_pct(tested[0].close, tested[-1].close)) if tested else ZERO,
    )


def _closes_by_time(tested: Mapping[str, Sequence[Candle]], symbols: Sequence[str]) -> list[dict[str, Decimal]]:
    """Every tested candle time's closes in dollars, by pair (a pair quoted in another of the bot's pairs is
    converted as the tick converts it: ``chalicelib.valuation``)."""
    dollars = to_account_currency(tested, symbols)
    by_time: dict[datetime, dict[str, Decimal]] = {}
    for symbol in symbols:
        for c in dollars.get(symbol, ()):
            by_time.setdefault(c.open_time, {})[symbol] = c.close
    ordered = [by_time[t] for t in sorted(by_time)]
    missing = [s for s in symbols if s not in ordered[0]] if ordered else list(symbols)
    if missing:
        raise BacktestError(f"no {', '.join(missing)} candle at the first tested time: the pairs' data must "
                            "start together")
    return ordered


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
