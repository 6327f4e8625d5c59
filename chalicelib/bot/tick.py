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
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from chalicelib import ledger
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
from chalicelib.trading.position import PositionView
from chalicelib.trading.risk import RiskConfig, can_open, size_position
from chalicelib.trading.strategies import EnterLong, Exit, Strategy, StrategyError, decide_safely, get_strategy

DEFAULT_MAX_CANDLES_PER_TICK = 500

#: Given the session's cursor, what time is it? (A wall clock for exchanges, the next candle's close for replay.)
Clock = Callable[[datetime | None], datetime | None]

TickStatus = Literal[
    "applied", "up_to_date", "locked", "inactive", "replay_finished", "bad_candles", "feed_error", "error"
]


@dataclass(frozen=True)
class TickSettings:
    max_candles_per_tick: int = DEFAULT_MAX_CANDLES_PER_TICK
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)

    def __post_init__(self) -> None:
        if self.max_candles_per_tick < 1:
            raise ValueError("max_candles_per_tick must be at least 1")


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
    """What one candle did: the decision, the fills, and the balance after it."""

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

    # 1. Market data, with no transaction open and no lock held.
    try:
        fetched = fetch_candles(feed, snapshot.symbol, snapshot.timeframe, snapshot.candle_cursor,
                                warmup=max(1, strategy.warmup), max_new=settings.max_candles_per_tick, now=now)
        validate_candles(fetched, snapshot.timeframe)
    except FeedError as exc:
        logger.error(f"Session #{sid}: market data unavailable: {exc}")
        return TickResult(sid, "feed_error", str(exc), cursor=snapshot.candle_cursor)
    except BadCandleError as exc:
        logger.error(f"Session #{sid}: refusing this tick, nothing written: {exc}")
        return TickResult(sid, "bad_candles", str(exc), cursor=snapshot.candle_cursor)

    # 2. One transaction: lock, compare the cursor, apply, advance, commit.
    with write_transaction(engine) as db:
        locked = ledger.lock(db, sid, skip_locked=True)  # with its open positions, in one statement
        if locked is None:
            logger.info(f"Session #{sid} is being ticked by another invocation; skipped")
            return TickResult(sid, "locked", "another tick holds this session", cursor=snapshot.candle_cursor)
        session = locked.session
        if session.status != "active" or session.strategy != strategy.name:
            return TickResult(sid, "inactive", f"session #{sid} changed while fetching", cursor=session.candle_cursor)
        return _apply(db, session, strategy, fetched, settings, locked.positions)


def fetch_candles(feed: Feed, symbol: str, timeframe: str, cursor: datetime | None, *, warmup: int, max_new: int,
                  now: datetime) -> list[Candle]:
    """The candles one tick needs: ``warmup`` of history up to the cursor, then up to ``max_new`` newer ones.

    A session without a cursor starts at the newest closed candle (with its history), not at the beginning of
    the exchange's memory.
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
    """The session's money and open positions during one transaction; every change goes through the ledger."""

    def __init__(self, db: Session, session: TradingSession, settings: TickSettings, now: datetime,
                 positions: Sequence[Position]) -> None:
        self.db = db
        self.session = session
        self.settings = settings
        self.now = now
        self.positions = list(positions)
        self.ledger = ledger.Batch(db, session, self.positions)
        self.opened = 0
        self.closed = 0

    def positions_value(self, close: Decimal) -> Decimal:
        """Open positions marked at ``close`` as the tick row stores it (money scale), so the rows of a candle and
        its tick row value the holdings at the same price."""
        return ledger.marked_value(self.positions, quantize_money(close))

    def equity(self, close: Decimal) -> Decimal:
        """Cash plus open positions marked at ``close`` (money scale, as above)."""
        return ledger.equity_of(self.session, self.positions, quantize_money(close))

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
        ))
        self.ledger.position_closed(
            position_id=position.id, pnl=trade.gross_pnl, exit_fee=fill.fee, released_cost=position.cost,
            exit_reason=reason, held=held_quantities(self.positions),
            positions_value=self.positions_value(candle.close), now=self.now, market_time=market_time,
        )
        self.closed += 1
        return FillReport(side="sell", reason=reason, quantity=fill.quantity, price=fill.price, fee=fill.fee,
                          pnl=trade.gross_pnl, fees=trade.fees, net=trade.net_pnl)

    def open(self, candle: Candle, decision: EnterLong, symbol: str,
             market_time: datetime) -> tuple[str, FillReport | str | None]:
        """Enter long at the close (plus slippage), sized by the risk rules. Returns the decision and the fill,
        or why there was none.

        The drawdown limit is measured on the value per unit marked at this close, from the series' peak, so
        deposits and withdrawals never move it."""
        s, broker, risk = self.session, self.settings.broker, self.settings.risk
        value = after_trading(ledger.unit_state(s), self.equity(candle.close))
        if not can_open(value.unit_value, value.peak_unit_value, risk.max_drawdown):
            return "blocked", (f"entry refused: drawdown {value.drawdown * 100:.2f}% from the peak value per unit "
                               f"reached the {risk.max_drawdown * 100:.0f}% limit")
        price = buy_price(candle.close, broker.slippage_bps)
        sizing = size_position(s.total_balance, s.available_balance, price, decision.stop_loss,
                               fee_rate=broker.fee_rate, config=risk)
        if sizing.quantity <= 0:
            return "hold", "entry skipped: the position size rounds to zero"
        fill = market_buy(candle, sizing.quantity, broker)
        if fill.notional + fill.fee > s.available_balance:
            return "hold", "entry skipped: not enough available cash for the cost and fee"
        position = Position(
            session_id=s.id, symbol=symbol, side="long", status="open", entry_price=fill.price,
            quantity=fill.quantity, cost=fill.notional, stop_loss=decision.stop_loss,
            take_profit=decision.take_profit, entry_time=candle.open_time, fees=fill.fee,
        )
        self.db.add(position)
        self.db.flush()  # the position id names its ledger row
        self.positions.append(position)
        self.ledger.position_opened(cost=fill.notional, fee=fill.fee, reference=ledger.position_reference(position.id),
                                    held=held_quantities(self.positions),
                                    positions_value=self.positions_value(candle.close), now=self.now,
                                    market_time=market_time)
        self.opened += 1
        return "enter_long", FillReport(side="buy", reason="enter_long", quantity=fill.quantity, price=fill.price,
                                        fee=fill.fee, cost=fill.notional, binding=sizing.binding,
                                        stop_loss=decision.stop_loss, take_profit=decision.take_profit)


def _fresh_candles(fetched: Sequence[Candle], cursor: datetime | None, limit: int) -> tuple[list[Candle], bool]:
    """The candles past the cursor, oldest first, at most ``limit`` (and whether more were waiting). A new session
    starts at the newest closed candle."""
    fresh = [c for c in fetched if cursor is None or c.open_time > cursor]
    if cursor is None:
        fresh = fresh[-1:]
    return fresh[:limit], len(fresh) > limit


def _apply(db: Session, session: TradingSession, strategy: Strategy, fetched: Sequence[Candle],
           settings: TickSettings, positions: Sequence[Position]) -> TickResult:
    """Apply the fresh candles of ``fetched`` (validated once, before the transaction) under the session lock."""
    sid, cursor = session.id, session.candle_cursor
    fresh, behind = _fresh_candles(fetched, cursor, settings.max_candles_per_tick)
    if not fresh:
        return TickResult(sid, "up_to_date", "no new closed candle", cursor=cursor, balance=session.total_balance)

    found_gaps = find_gaps(fresh, session.timeframe, after=cursor)
    gaps = tuple(g.describe() for g in found_gaps)
    for gap in gaps:
        logger.warning(f"Session #{sid}: gap in market data, skipped over: {gap}")

    now = utcnow()
    book = _Book(db, session, settings, now, positions)
    # Advance the cursor now: it rides along with the ledger's one session UPDATE at the end (fewer
    # statements); the transaction makes it all-or-nothing either way.
    book.ledger.set(candle_cursor=fresh[-1].open_time, last_tick_at=now)
    step = _CandleStep(book, strategy, fetched, {g.before for g in found_gaps},
                       timeframe_to_timedelta(session.timeframe))
    outcomes: list[CandleOutcome] = []
    logs: list[dict[str, object]] = []
    for candle in fresh:
        outcome, row = step.apply(candle)
        outcomes.append(outcome)
        logs.append(row)
    # The ledger's rows, the session's balance and cursor and the tick rows, together (one statement on PostgreSQL).
    book.ledger.write(tick_rows=logs)
    last = outcomes[-1]
    logger.info(f"Session #{sid}: applied {len(outcomes)} candle(s) up to {format_time(last.candle_time)}; balance "
                f"{format_usd(session.total_balance)}, equity {format_usd(last.equity)}")
    return TickResult(sid, "applied", cursor=session.candle_cursor, outcomes=tuple(outcomes), gaps=gaps, behind=behind,
                      balance=session.total_balance, equity=last.equity)


class _CandleStep:
    """One candle of a tick: exits first, then the strategy, then the mark and the candle's tick row."""

    def __init__(self, book: _Book, strategy: Strategy, fetched: Sequence[Candle], gap_before: set[datetime],
                 step: timedelta) -> None:
        self.book, self.strategy, self.fetched, self.gap_before, self.step = book, strategy, fetched, gap_before, step
        self.index_of = {c.open_time: i for i, c in enumerate(fetched)}
        self.warmup = max(1, strategy.warmup)

    def apply(self, candle: Candle) -> tuple[CandleOutcome, dict[str, object]]:
        book, session = self.book, self.book.session
        set_candle_time(candle.open_time)
        market_time = candle.open_time + self.step
        opened_before, closed_before = book.opened, book.closed
        notes = ["after a gap in market data"] if candle.open_time in self.gap_before else []
        # 1. Stops and targets of positions opened on earlier candles.
        fills = self._exits(candle, market_time)
        # 2. The strategy, on the candles up to and including this one.
        kind, note, fill = self._decide(candle, market_time)
        if fill is not None:
            fills.append(fill)
        if note:
            notes.append(note)
        detail = "; ".join([*notes, *(describe_fill(f) for f in fills)])
        close = quantize_money(candle.close)
        equity = book.equity(close)
        book.ledger.mark(close=close, equity=equity, market_time=market_time)
        row: dict[str, object] = {
            "session_id": session.id, "candle_time": candle.open_time, "close_price": close, "decision": kind,
            "detail": detail[:2000] or None, "processed_at": book.now, "market_time": market_time, "equity": equity,
            "units": session.units, "unit_value": session.unit_value, "ledger_version": session.version,
            "performance_index": ledger.unit_state(session).performance_index}
        outcome = CandleOutcome(
            candle_time=candle.open_time, close=candle.close, decision=kind, detail="; ".join(notes),
            fills=tuple(fills), balance=session.total_balance, available=session.available_balance,
            equity=equity, opened=book.opened - opened_before, closed=book.closed - closed_before,
        )
        if fills or kind in ("error", "blocked"):
            logger.info(f"Session #{session.id} {format_time(candle.open_time)}: {kind}; {detail}")
        return outcome, row

    def _exits(self, candle: Candle, market_time: datetime) -> list[FillReport]:
        fills = []
        for position in list(self.book.positions):
            signal = check_exit(_view(position), candle)
            if signal is not None:
                fill = exit_fill(_view(position), signal, self.book.settings.broker)
                fills.append(self.book.close(position, fill, candle, signal.reason, market_time))
        return fills

    def _decide(self, candle: Candle, market_time: datetime) -> tuple[str, str, FillReport | None]:
        """The strategy's decision and what came of it: (decision, note, fill)."""
        book = self.book
        i = self.index_of[candle.open_time]
        window = self.fetched[max(0, i - self.warmup + 1) : i + 1]
        current = book.positions[-1] if book.positions else None
        try:
            decision = decide_safely(self.strategy, window, _view(current) if current is not None else None)
        except StrategyError as exc:
            logger.error(f"Session #{book.session.id}: {exc}; holding for this candle")
            return "error", str(exc), None
        if isinstance(decision, EnterLong):
            kind, result = book.open(candle, decision, book.session.symbol, market_time)
            if isinstance(result, FillReport):
                return kind, decision.reason, result
            note = f"{decision.reason}; {result}" if decision.reason and result else (result or decision.reason)
            return kind, note, None
        if isinstance(decision, Exit) and current is not None:
            sell = market_sell(candle, current.quantity, book.settings.broker)
            return decision.kind, decision.reason, book.close(current, sell, candle, "strategy_exit", market_time)
        return decision.kind, decision.reason, None
