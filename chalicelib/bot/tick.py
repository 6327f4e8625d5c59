"""The tick: the one place a tick transaction is framed (promise 4).

For one session: read its cursor (no lock), fetch closed candles — the strategy's warm-up history up to the
cursor plus the unprocessed ones — with no transaction open, validate them, then in ONE write transaction:
lock the session row (skipping it if another invocation holds it), re-read the cursor under the lock, and
apply every closed candle newer than it, oldest first, at most ``max_candles_per_tick``:

1. each open position's stop loss / take profit against the candle (broker rules: gap → open, stop wins);
2. the strategy's decision on the candles up to and including this one (never later ones: no look-ahead);
   an entry is sized from the current balance, refused past the drawdown limit (from the persisted peak);
3. one ``tick_log`` row for the candle.

Fills go through the ledger with references (``position:{id}:open``, ``trade:{id}:pnl``,
``trade:{id}:exit_fee``) the database keeps unique, then the cursor advances and the transaction commits. A crash
anywhere before the commit leaves nothing; a repeated or overlapping tick finds no candle past the cursor and
changes nothing. So any pattern of missed, duplicated or crashed ticks ends where one uninterrupted run ends
(promise 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from chalicelib import accounting, ledger, valuation
from chalicelib.accounting import after_trading
from chalicelib.bot.observability import logger, set_candle_time, tick_log_keys
from chalicelib.db.models import Position, Trade, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import held_quantities
from chalicelib.money import format_usd, quantize_money
from chalicelib.trading.broker import (
    BrokerConfig,
    Fill,
    buy_price,
    check_exit,
    close_trade,
    exit_fill,
    market_buy,
    market_sell,
)
from chalicelib.trading.candles import (
    BadCandleError,
    Candle,
    find_gaps,
    format_time,
    timeframe_to_timedelta,
    validate_candles,
)
from chalicelib.trading.feeds import Feed, FeedError
from chalicelib.trading.markets import UNRESTRICTED, MarketRules
from chalicelib.trading.position import PositionView
from chalicelib.trading.risk import RiskConfig, can_open, size_position
from chalicelib.trading.strategies import (
    EnterLong,
    Exit,
    Strategy,
    StrategyError,
    decide_safely,
    get_strategy,
    strategy_version,
)
from chalicelib.trading.symbols import parse_symbol
from chalicelib.valuation import Mark

if TYPE_CHECKING:
    from chalicelib.settings import Settings

DEFAULT_MAX_CANDLES_PER_TICK = 500

#: Given the session's cursor, what time is it? (A wall clock for exchanges, the next candle's close for replay.)
Clock = Callable[[datetime | None], datetime | None]

TickStatus = Literal[
    "applied", "up_to_date", "locked", "inactive", "replay_finished", "bad_candles", "feed_error", "error"
]


@dataclass(frozen=True)
class TickSettings:
    #: the most candle *times* one tick applies (each of a several-pair bot's pairs at most this many candles)
    max_candles_per_tick: int = DEFAULT_MAX_CANDLES_PER_TICK
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    #: how long a tick on an exchange feed waits for a pair that has not yet published a candle the others have
    #: closed, before it applies the others and leaves that pair to catch up on a later tick
    symbol_wait_s: float = 10.0
    #: how the wait sleeps (tests pass a fake)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_candles_per_tick < 1:
            raise ValueError("max_candles_per_tick must be at least 1")
        if not self.symbol_wait_s >= 0:
            raise ValueError("symbol_wait_s must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TickSettings:
        """The tick's settings from the process's checked configuration (``chalicelib.settings``): the catch-up
        bound, the wallet's risk rules and the late-pair wait."""
        values: dict[str, Any] = {"max_candles_per_tick": settings.max_candles_per_tick, "risk": settings.risk,
                                  "symbol_wait_s": settings.symbol_wait_s}
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class FillReport:
    """A fill as data: what the tick did. :func:`describe_fill` is the one place it becomes words (the tick log
    row, the CLI and the log lines all use it)."""

    side: Literal["buy", "sell"]
    reason: str  # enter_long, or why the position closed: stop_loss, take_profit, strategy_exit
    quantity: Decimal
    price: Decimal
    fee: Decimal
    cost: Decimal = Decimal(0)  # buy: the notional paid
    binding: str = ""  # buy: which risk rule sized it
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    pnl: Decimal = Decimal(0)  # sell: gross P&L of the round trip
    fees: Decimal = Decimal(0)  # sell: entry and exit fees
    net: Decimal = Decimal(0)  # sell: pnl - fees


def describe_fill(fill: FillReport) -> str:
    """The words for a fill, e.g. ``bought 0.01 @ $60,000.00 (cost …)`` or ``stop loss: sold …, P&L …``."""
    if fill.side == "buy":
        return (f"bought {_qty(fill.quantity)} @ {format_usd(fill.price)} (cost {format_usd(fill.cost)}, fee "
                f"{format_usd(fill.fee)}, {fill.binding}; stop {_usd(fill.stop_loss)}, target "
                f"{_usd(fill.take_profit)})")
    return (f"{fill.reason.replace('_', ' ')}: sold {_qty(fill.quantity)} @ {format_usd(fill.price)}, "
            f"P&L {format_usd(fill.pnl)}, fees {format_usd(fill.fees)}, net {format_usd(fill.net)}")


def _usd(value: Decimal | None) -> str:
    return "none" if value is None else format_usd(value)


@dataclass(frozen=True)
class CandleOutcome:
    """What one candle of one pair did: the decision, the fills, and the balance after it."""

    symbol: str
    candle_time: datetime
    close: Decimal
    decision: str
    detail: str
    fills: tuple[FillReport, ...]
    balance: Decimal
    available: Decimal
    equity: Decimal
    opened: int = 0
    closed: int = 0


@dataclass(frozen=True)
class TickResult:
    session_id: int
    status: TickStatus
    message: str = ""
    outcomes: tuple[CandleOutcome, ...] = ()
    cursor: datetime | None = None
    gaps: tuple[str, ...] = ()
    #: more closed candles were waiting than one tick may apply
    behind: bool = False
    #: pairs left out of this tick (market data unavailable, refused, or not yet published), with why: each
    #: catches up on a later tick while the others trade
    skipped: tuple[str, ...] = ()
    balance: Decimal | None = None
    equity: Decimal | None = None
    duration_ms: float = 0.0

    @property
    def candles_applied(self) -> int:
        return len(self.outcomes)

    @property
    def trades_opened(self) -> int:
        return sum(o.opened for o in self.outcomes)

    @property
    def trades_closed(self) -> int:
        return sum(o.closed for o in self.outcomes)


def wall_clock(_cursor: datetime | None = None) -> datetime:
    return utcnow()


def fixed_clock(now: datetime) -> Clock:
    return lambda _cursor: now


def tick_session(
    engine: Engine,
    session_id: int,
    feed: Feed,
    *,
    clock: Clock = wall_clock,
    strategy: Strategy | None = None,
    settings: TickSettings | None = None,
) -> TickResult:
    """Apply every unprocessed closed candle to one session, exactly once, in one transaction.

    Never raises for market trouble (feed errors, bad candles): those come back as a status with nothing
    written. Database errors propagate (the transaction is rolled back).
    """
    settings = settings or TickSettings()
    started = time.perf_counter()
    with read_transaction(engine) as db:
        snapshot = db.get(TradingSession, session_id)
    if snapshot is None:
        raise ledger.SessionNotFound(f"no trading session #{session_id}")
    with tick_log_keys(session_id=session_id, strategy=snapshot.strategy, symbol=snapshot.symbol,
                       timeframe=snapshot.timeframe, candle_time=snapshot.candle_cursor):
        result = _tick(engine, snapshot, feed, clock, strategy, settings)
    return _with_duration(result, started)


def _with_duration(result: TickResult, started: float) -> TickResult:
    from dataclasses import replace

    return replace(result, duration_ms=round((time.perf_counter() - started) * 1000, 3))


def _tick(engine: Engine, snapshot: TradingSession, feed: Feed, clock: Clock, strategy: Strategy | None,
          settings: TickSettings) -> TickResult:
    sid = snapshot.id
    if snapshot.status != "active":
        return TickResult(sid, "inactive", f"session #{sid} has ended", cursor=snapshot.candle_cursor)
    strategy = strategy or get_strategy(snapshot.strategy)
    if strategy.name != snapshot.strategy:
        return TickResult(sid, "inactive", f"session #{sid} trades {snapshot.strategy}, not {strategy.name}",
                          cursor=snapshot.candle_cursor)
    now = clock(snapshot.candle_cursor)
    if now is None:
        return TickResult(sid, "replay_finished", "no more recorded candles to replay", cursor=snapshot.candle_cursor,
                          balance=snapshot.total_balance)

    # 1. Market data for every pair, with no transaction open and no lock held.
    market = _fetch_market(feed, snapshot, strategy, settings, now)
    if not market.candles:
        status, message = market.failure
        return TickResult(sid, status, message, cursor=snapshot.candle_cursor, skipped=market.skipped)

    # 2. One transaction: lock, compare the cursors, apply, advance, commit.
    with write_transaction(engine) as db:
        locked = ledger.lock(db, sid, skip_locked=True)  # with its open positions, in one statement
        if locked is None:
            logger.info(f"Session #{sid} is being ticked by another invocation; skipped")
            return TickResult(sid, "locked", "another tick holds this session", cursor=snapshot.candle_cursor)
        session = locked.session
        if session.status != "active" or session.strategy != strategy.name:
            return TickResult(sid, "inactive", f"session #{sid} changed while fetching", cursor=session.candle_cursor)
        return _apply(db, session, strategy, market, settings, locked.positions)


@dataclass
class _Market:
    """What a tick fetched: each pair's validated candles in dollars, its order filters, and the pairs left out."""

    symbols: tuple[str, ...]
    candles: dict[str, list[Candle]]
    rules: dict[str, MarketRules]
    skipped: tuple[str, ...] = ()
    failure: tuple[TickStatus, str] = ("feed_error", "")


def _fetch_market(feed: Feed, snapshot: TradingSession, strategy: Strategy, settings: TickSettings,
                  now: datetime) -> _Market:
    """Each pair's candles (warm-up plus unprocessed, validated), fetched pair by pair so that one pair's outage or
    bad data leaves it out (it catches up later) while the others trade. On an exchange feed a pair that has not yet
    published a candle the others have closed is asked again until ``symbol_wait_s`` has passed."""
    symbols = snapshot.symbols
    sid, warmup = snapshot.id, max(1, strategy.warmup)
    fetched: dict[str, list[Candle]] = {}
    problems: dict[str, tuple[TickStatus, str]] = {}

    def fetch(symbol: str) -> None:
        cursor = pair_cursor(snapshot, symbol)
        try:
            candles = fetch_candles(feed, symbol, snapshot.timeframe, cursor, warmup=warmup,
                                    max_new=settings.max_candles_per_tick, now=now)
            validate_candles(candles, snapshot.timeframe)
        except FeedError as exc:
            logger.error(f"Session #{sid}: market data unavailable for {symbol}: {exc}")
            problems[symbol] = ("feed_error", str(exc) if len(symbols) == 1 else f"{symbol}: {exc}")
            return
        except BadCandleError as exc:
            logger.error(f"Session #{sid}: refusing {symbol}'s candles this tick, nothing written for it: {exc}")
            problems[symbol] = ("bad_candles", str(exc) if len(symbols) == 1 else f"{symbol}: {exc}")
            return
        problems.pop(symbol, None)
        fetched[symbol] = candles

    for symbol in symbols:
        fetch(symbol)
    if len(symbols) > 1 and not _is_replay(feed):
        _wait_for_laggards(fetched, fetch, settings)
    skipped = [problems[s][1] for s in symbols if s in problems]
    newest = max((c[-1].open_time for c in fetched.values() if c), default=None)
    skipped += [f"{s}: no candle at {format_time(newest)} yet" for s, c in fetched.items()
                if newest is not None and (not c or c[-1].open_time < newest)]
    try:
        dollars = valuation.to_account_currency(fetched, symbols)
    except valuation.ValuationError as exc:  # the bot definition refuses this; a stored row from elsewhere might not
        return _Market(symbols, {}, {}, tuple(skipped), ("bad_candles", str(exc)))
    rules: dict[str, MarketRules] = {}
    if dollars:
        market_rules = getattr(feed, "market_rules", None)
        for symbol in dollars:
            try:
                rules[symbol] = market_rules(symbol) if market_rules is not None else UNRESTRICTED
            except FeedError as exc:
                logger.error(f"Session #{sid}: no order filters for {symbol}: {exc}")
                skipped.append(f"{symbol}: {exc}")
        dollars = {s: c for s, c in dollars.items() if s in rules}
    failure = next(iter(problems.values()), ("feed_error", "no market data"))
    return _Market(symbols, dollars, rules, tuple(skipped), failure)


def pair_cursor(session: TradingSession, symbol: str) -> datetime | None:
    """The open time of ``symbol``'s newest applied candle: its mark's, else where the account began
    (``pairs_from``: a pair late or failing when the account started catches up from there, never skipping a
    candle); None for a new account, whose pairs start at their newest closed candle."""
    mark = session.marks.get(symbol)
    return mark.cursor if mark is not None else session.pairs_from


def _is_replay(feed: Feed) -> bool:
    return hasattr(feed, "replay_now")


def _wait_for_laggards(fetched: dict[str, list[Candle]], fetch: Callable[[str], None],
                       settings: TickSettings) -> None:
    """Ask again, until ``symbol_wait_s`` has passed, for the pairs whose newest closed candle is older than the
    newest any pair has closed (an exchange publishes each market a moment apart). The wait ends when the pauses
    asked of ``settings.sleep`` add up to ``symbol_wait_s`` (so a fake sleep ends it without real waiting) or that
    much real time has passed (slow requests count too)."""
    deadline = time.monotonic() + settings.symbol_wait_s
    pause, slept = 0.5, 0.0
    while True:
        newest = max((c[-1].open_time for c in fetched.values() if c), default=None)
        lagging = [s for s, c in fetched.items() if newest is not None and (not c or c[-1].open_time < newest)]
        left = min(settings.symbol_wait_s - slept, deadline - time.monotonic())
        if not lagging or left <= 0:
            return
        nap = min(pause, left)
        settings.sleep(nap)
        slept += nap
        pause = min(pause * 2, 2.0)
        for symbol in lagging:
            fetch(symbol)


def fetch_candles(feed: Feed, symbol: str, timeframe: str, cursor: datetime | None, *, warmup: int, max_new: int,
                  now: datetime) -> list[Candle]:
    """The candles one tick needs of one pair: ``warmup`` of history up to the pair's cursor, then up to ``max_new``
    newer ones.

    A pair without a cursor starts at the newest closed candle (with its history), not at the beginning of the
    exchange's memory.
    """
    if cursor is None:
        return feed.fetch_closed_candles(symbol, timeframe, None, warmup, now)
    step = timeframe_to_timedelta(timeframe)
    return feed.fetch_closed_candles(symbol, timeframe, cursor - step * warmup, warmup + max_new, now)


def _view(p: Position) -> PositionView:
    assert p.stop_loss is not None and p.take_profit is not None
    return PositionView(entry_price=p.entry_price, quantity=p.quantity, stop_loss=p.stop_loss,
                        take_profit=p.take_profit, opened_at=p.entry_time, side=p.side)


def _qty(value: Decimal) -> str:
    return format(value.normalize(), "f")


class _Book:
    """The account's money, open positions and marks during one transaction; every change goes through the
    ledger."""

    def __init__(self, db: Session, session: TradingSession, settings: TickSettings, now: datetime,
                 positions: Sequence[Position], strategy: Strategy) -> None:
        self.db = db
        self.session = session
        self.settings = settings
        self.now = now
        self.positions = list(positions)
        self.marks: dict[str, Mark] = dict(session.marks)
        self.ledger = ledger.Batch(db, session, self.positions)
        self.strategy_name = strategy.name
        self.strategy_version = strategy_version(strategy)
        self.opened = 0
        self.closed = 0

    def mark_at(self, symbol: str, candle: Candle) -> None:
        """This pair's positions are now valued at ``candle``'s close (money scale, as the tick row stores it)."""
        self.marks[symbol] = Mark(quantize_money(candle.close), candle.open_time)

    def holdings(self) -> list[valuation.Holding]:
        return ledger.holdings(self.positions, self.marks)

    def positions_value(self) -> Decimal:
        """Open positions, each marked at its pair's latest close."""
        return valuation.positions_value(self.holdings())

    def equity(self) -> Decimal:
        """Cash plus every open position at its pair's mark."""
        return accounting.equity(self.session.available_balance, self.positions_value())

    def of_symbol(self, symbol: str) -> list[Position]:
        return [p for p in self.positions if p.symbol == symbol]

    def close(self, position: Position, fill: Fill, candle: Candle, reason: str,
              market_time: datetime) -> FillReport:
        trade = close_trade(_view(position), fill, entry_fee=position.fees)
        self.positions.remove(position)
        position.status = "closed"
        position.exit_price = fill.price
        position.exit_time = candle.open_time
        position.exit_reason = reason
        position.realized_pnl = trade.gross_pnl
        position.fees = trade.fees
        self.db.add(Trade(
            session_id=self.session.id, position_id=position.id, symbol=position.symbol, side=position.side,
            entry_price=position.entry_price, exit_price=fill.price, quantity=fill.quantity,
            entry_time=position.entry_time, exit_time=candle.open_time, realized_pnl=trade.gross_pnl,
            fees=trade.fees, exit_reason=reason, market_time=market_time, recorded_at=self.now,
            strategy=position.strategy, strategy_version=position.strategy_version,
        ))
        self.ledger.position_closed(
            position_id=position.id, pnl=trade.gross_pnl, exit_fee=fill.fee, released_cost=position.cost,
            exit_reason=reason, held=held_quantities(self.positions),
            positions_value=self.positions_value(), now=self.now, market_time=market_time,
        )
        self.closed += 1
        return FillReport(side="sell", reason=reason, quantity=fill.quantity, price=fill.price, fee=fill.fee,
                          pnl=trade.gross_pnl, fees=trade.fees, net=trade.net_pnl)

    def open(self, candle: Candle, decision: EnterLong, symbol: str, rules: MarketRules,
             market_time: datetime) -> tuple[str, FillReport | str | None]:
        """Enter long at the close (plus slippage), sized by the wallet's risk rules. Returns the decision and the
        fill, or why there was none.

        The drawdown limit is measured on the whole account's value per unit marked at the latest closes, from the
        series' peak, so deposits and withdrawals never move it."""
        s, broker, risk = self.session, self.settings.broker, self.settings.risk
        equity = self.equity()
        value = after_trading(ledger.unit_state(s), equity)
        if not can_open(value.unit_value, value.peak_unit_value, risk.max_drawdown):
            return "blocked", (f"entry refused: drawdown {value.drawdown * 100:.2f}% from the peak value per unit "
                               f"reached the {risk.max_drawdown * 100:.0f}% limit")
        price = buy_price(candle.close, broker.slippage_bps)
        items = self.holdings()
        sizing = size_position(equity, s.available_balance, price, decision.stop_loss, fee_rate=broker.fee_rate,
                               config=risk, exposure=valuation.gross_exposure(items),
                               asset_exposure=valuation.asset_exposure(items, parse_symbol(symbol).base),
                               rules=rules)
        if sizing.binding == "min_order":
            return "hold", "entry skipped: the size is below the exchange's minimum order"
        if sizing.quantity <= 0:
            return "hold", "entry skipped: the position size rounds to zero"
        fill = market_buy(candle, sizing.quantity, broker)
        if fill.notional + fill.fee > s.available_balance:
            return "hold", "entry skipped: not enough available cash for the cost and fee"
        position = Position(
            session_id=s.id, symbol=symbol, side="long", status="open", entry_price=fill.price,
            quantity=fill.quantity, cost=fill.notional, stop_loss=decision.stop_loss,
            take_profit=decision.take_profit, entry_time=candle.open_time, fees=fill.fee,
            strategy=self.strategy_name, strategy_version=self.strategy_version,
        )
        self.db.add(position)
        self.db.flush()  # the position id names its ledger row
        self.positions.append(position)
        self.ledger.position_opened(cost=fill.notional, fee=fill.fee, reference=ledger.position_reference(position.id),
                                    held=held_quantities(self.positions),
                                    positions_value=self.positions_value(), now=self.now,
                                    market_time=market_time)
        self.opened += 1
        return "enter_long", FillReport(side="buy", reason="enter_long", quantity=fill.quantity, price=fill.price,
                                        fee=fill.fee, cost=fill.notional, binding=sizing.binding,
                                        stop_loss=decision.stop_loss, take_profit=decision.take_profit)


def _fresh_candles(fetched: Sequence[Candle], cursor: datetime | None) -> list[Candle]:
    """One pair's candles past its cursor, oldest first. A new pair starts at its newest closed candle."""
    fresh = [c for c in fetched if cursor is None or c.open_time > cursor]
    return fresh[-1:] if cursor is None else fresh


def _schedule(market: _Market, session: TradingSession, limit: int) -> tuple[list[tuple[str, Candle]], bool]:
    """Every pair's fresh candles in the order a tick applies them — market time, then the bot's fixed symbol
    order — for at most ``limit`` candle times (and whether more were waiting). The same candles in the same order
    whatever the ticks' rhythm: the replay-equivalence promise with several pairs."""
    order = {s: i for i, s in enumerate(market.symbols)}
    queue = [(c.open_time, order[s], s, c) for s, candles in market.candles.items()
             for c in _fresh_candles(candles, pair_cursor(session, s))]
    queue.sort(key=lambda item: (item[0], item[1]))
    times = sorted({t for t, *_ in queue})
    if len(times) > limit:
        cut = times[limit - 1]
        return [(s, c) for t, _, s, c in queue if t <= cut], True
    return [(s, c) for _, _, s, c in queue], False


def _apply(db: Session, session: TradingSession, strategy: Strategy, market: _Market,
           settings: TickSettings, positions: Sequence[Position]) -> TickResult:
    """Apply the fresh candles of every pair (validated once, before the transaction) under the session lock."""
    sid, cursor = session.id, session.candle_cursor
    schedule, behind = _schedule(market, session, settings.max_candles_per_tick)
    if not schedule:
        return TickResult(sid, "up_to_date", "no new closed candle", cursor=cursor, balance=session.total_balance,
                          skipped=market.skipped)

    gap_before: set[tuple[str, datetime]] = set()
    gaps: list[str] = []
    for symbol in market.symbols:
        mine = [c for s, c in schedule if s == symbol]
        for gap in find_gaps(mine, session.timeframe, after=pair_cursor(session, symbol)):
            gap_before.add((symbol, gap.before))
            gaps.append(gap.describe() if len(market.symbols) == 1 else f"{symbol}: {gap.describe()}")
    for gap_text in gaps:
        logger.warning(f"Session #{sid}: gap in market data, skipped over: {gap_text}")

    now = utcnow()
    book = _Book(db, session, settings, now, positions, strategy)
    newest = max(c.open_time for _, c in schedule)
    # Advance the cursor now: it rides along with the ledger's one session UPDATE at the end (fewer
    # statements); the transaction makes it all-or-nothing either way.
    book.ledger.set(candle_cursor=newest if cursor is None else max(cursor, newest), last_tick_at=now)
    step_length = timeframe_to_timedelta(session.timeframe)
    if session.pairs_from is None:  # the account's first candles: where a pair not applied yet starts from
        book.ledger.set(pairs_from=min(c.open_time for _, c in schedule) - step_length)
    step = _CandleStep(book, strategy, market, gap_before, step_length)
    outcomes: list[CandleOutcome] = []
    logs: list[dict[str, object]] = []
    for symbol, candle in schedule:
        outcome, row = step.apply(symbol, candle)
        outcomes.append(outcome)
        logs.append(row)
    # The ledger's rows, the session's balance, marks and cursor and the tick rows, together (one statement on
    # PostgreSQL).
    book.ledger.write(tick_rows=logs)
    last = outcomes[-1]
    for skipped in market.skipped:
        logger.warning(f"Session #{sid}: left out of this tick, catches up later: {skipped}")
    logger.info(f"Session #{sid}: applied {len(outcomes)} candle(s) up to {format_time(last.candle_time)}; balance "
                f"{format_usd(session.total_balance)}, equity {format_usd(last.equity)}")
    return TickResult(sid, "applied", cursor=session.candle_cursor, outcomes=tuple(outcomes), gaps=tuple(gaps),
                      behind=behind, balance=session.total_balance, equity=last.equity, skipped=market.skipped)


class _CandleStep:
    """One candle of one pair: that pair's exits first, then the strategy on that pair, then the pair's mark and
    the candle's tick row."""

    def __init__(self, book: _Book, strategy: Strategy, market: _Market, gap_before: set[tuple[str, datetime]],
                 step: timedelta) -> None:
        self.book, self.strategy, self.market, self.gap_before, self.step = book, strategy, market, gap_before, step
        self.index_of = {s: {c.open_time: i for i, c in enumerate(candles)} for s, candles in market.candles.items()}
        self.warmup = max(1, strategy.warmup)

    def apply(self, symbol: str, candle: Candle) -> tuple[CandleOutcome, dict[str, object]]:
        book, session = self.book, self.book.session
        set_candle_time(candle.open_time)
        market_time = candle.open_time + self.step
        opened_before, closed_before = book.opened, book.closed
        # Every row of this candle values this pair's holdings at its close (the others at their latest closes).
        book.mark_at(symbol, candle)
        notes = ["after a gap in market data"] if (symbol, candle.open_time) in self.gap_before else []
        # 1. Stops and targets of this pair's positions opened on earlier candles.
        fills = self._exits(symbol, candle, market_time)
        # 2. The strategy, on this pair's candles up to and including this one.
        kind, note, fill = self._decide(symbol, candle, market_time)
        if fill is not None:
            fills.append(fill)
        if note:
            notes.append(note)
        detail = "; ".join([*notes, *(describe_fill(f) for f in fills)])
        close = quantize_money(candle.close)
        items = book.holdings()
        equity = accounting.equity(session.available_balance, valuation.positions_value(items))
        book.ledger.mark(marks=book.marks, equity=equity, market_time=market_time)
        row: dict[str, object] = {
            "session_id": session.id, "symbol": symbol, "candle_time": candle.open_time, "close_price": close,
            "decision": kind, "detail": detail[:2000] or None, "processed_at": book.now, "market_time": market_time,
            "equity": equity, "units": session.units, "unit_value": session.unit_value,
            "ledger_version": session.version, "performance_index": ledger.unit_state(session).performance_index,
            "exposure": valuation.gross_exposure(items)}
        outcome = CandleOutcome(
            symbol=symbol, candle_time=candle.open_time, close=candle.close, decision=kind,
            detail="; ".join(notes), fills=tuple(fills), balance=session.total_balance,
            available=session.available_balance, equity=equity, opened=book.opened - opened_before,
            closed=book.closed - closed_before,
        )
        if fills or kind in ("error", "blocked"):
            logger.info(f"Session #{session.id} {symbol} {format_time(candle.open_time)}: {kind}; {detail}")
        return outcome, row

    def _exits(self, symbol: str, candle: Candle, market_time: datetime) -> list[FillReport]:
        fills = []
        for position in self.book.of_symbol(symbol):
            signal = check_exit(_view(position), candle)
            if signal is not None:
                fill = exit_fill(_view(position), signal, self.book.settings.broker)
                fills.append(self.book.close(position, fill, candle, signal.reason, market_time))
        return fills

    def _decide(self, symbol: str, candle: Candle, market_time: datetime) -> tuple[str, str, FillReport | None]:
        """The strategy's decision on this pair and what came of it: (decision, note, fill)."""
        book = self.book
        candles = self.market.candles[symbol]
        i = self.index_of[symbol][candle.open_time]
        window = candles[max(0, i - self.warmup + 1) : i + 1]
        held = book.of_symbol(symbol)
        current = held[-1] if held else None
        try:
            decision = decide_safely(self.strategy, window, _view(current) if current is not None else None,
                                     may_add=len(held) < book.settings.risk.max_positions_per_symbol)
        except StrategyError as exc:
            logger.error(f"Session #{book.session.id}: {exc}; holding {symbol} for this candle")
            return "error", str(exc), None
        if isinstance(decision, EnterLong):
            kind, result = book.open(candle, decision, symbol, self.market.rules[symbol], market_time)
            if isinstance(result, FillReport):
                return kind, decision.reason, result
            note = f"{decision.reason}; {result}" if decision.reason and result else (result or decision.reason)
            return kind, note, None
        if isinstance(decision, Exit) and current is not None:
            sell = market_sell(candle, current.quantity, book.settings.broker)
            return decision.kind, decision.reason, book.close(current, sell, candle, "strategy_exit", market_time)
        return decision.kind, decision.reason, None
