"""A bot's account for life: find it, reopen it, start it, reset it, or switch its strategy. Each is one write
transaction (finding an account that needs no change is one read).

A bot is (symbol, timeframe, exchange, mode) and has exactly one account (a ``trading_sessions`` row; the
database allows one active row per bot). The strategy is an attribute of the account: switching it — with
``atb switch-strategy`` or by running the other strategy's command — keeps the balance, open positions, cursor,
units and peak, and records a ``strategy_switch`` row in the same ledger. A stopped account is reopened (a
``reopened`` row), never copied; ``--fresh --confirm`` records a ``reset`` in the same ledger, so switches,
reopenings and resets are moments of one timeline that the history, the trades and the chart read as one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import ColumnElement, Engine, and_, select
from sqlalchemy.exc import IntegrityError, MultipleResultsFound
from sqlalchemy.orm import Session

from chalicelib import accounting, ledger
from chalicelib.bot.observability import logger
from chalicelib.bots import BotSpec
from chalicelib.db.models import Position, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import SYSTEM, Actor, open_positions
from chalicelib.money import format_usd
from chalicelib.trading.candles import floor_to_grid, format_time, timeframe_to_timedelta


class SessionError(RuntimeError):
    """A session operation the engine refuses; the message says why in one line."""


class LiveTradingDisabled(SessionError):
    """Real-money trading is not implemented; this bot only paper-trades."""


@dataclass(frozen=True)
class RecoveredPosition:
    id: int
    symbol: str
    side: str
    entry_price: Decimal
    quantity: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    entry_time: datetime

    def describe(self) -> str:
        stop = format_usd(self.stop_loss) if self.stop_loss is not None else "none"
        target = format_usd(self.take_profit) if self.take_profit is not None else "none"
        qty = format(self.quantity.normalize(), "f")
        return (f"{self.symbol} {self.side} @ {format_usd(self.entry_price)} × {qty} "
                f"(stop {stop}, target {target})")


OpeningHow = Literal["found", "resumed", "started", "fresh"]


@dataclass(frozen=True)
class SessionOpening:
    """What opening a bot's account found or did — the lines a trader reads on start (promise 6)."""

    how: OpeningHow
    session_id: int
    spec: BotSpec
    total_balance: Decimal
    available_balance: Decimal
    reserved_balance: Decimal
    unit_value: Decimal
    peak_unit_value: Decimal
    candle_cursor: datetime | None
    positions: tuple[RecoveredPosition, ...] = ()
    switched_from: str | None = None
    reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def drawdown(self) -> Decimal:
        return accounting.drawdown(self.unit_value, self.peak_unit_value)

    def lines(self) -> list[str]:
        sid = self.session_id
        out: list[str] = []
        if self.how == "found":
            out.append(f"Found active session #{sid} ({self.spec.label})")
        elif self.how == "resumed":
            out.append(f"Reopened session #{sid} ({self.spec.label}): the same account, where it stopped")
        elif self.how == "fresh":
            out.append(f"Reset session #{sid} ({self.spec.label}) to {format_usd(self.total_balance)} (--fresh); "
                       "its earlier history stays in the same ledger")
        else:
            out.append(f"Started session #{sid} ({self.spec.label}) with initial balance "
                       f"{format_usd(self.total_balance)}")
        if self.switched_from is not None:
            out.append(f"Switched strategy {self.switched_from} → {self.spec.strategy} (recorded in the ledger)")
        if self.how in ("found", "resumed"):
            out.append(f"Recovered balance for session #{sid}: {format_usd(self.total_balance)} "
                       f"(available {format_usd(self.available_balance)}, reserved "
                       f"{format_usd(self.reserved_balance)}, drawdown {self.drawdown * 100:.2f}%)")
            count = len(self.positions)
            out.append(f"Recovering {count} active position{'s' if count != 1 else ''}…")
            out.extend(f"Recovered position: {p.describe()}" for p in self.positions)
            out.append(f"Successfully recovered {count} position{'s' if count != 1 else ''}")
        out.extend(self.notes)
        out.append(
            f"Next candle after {format_time(self.candle_cursor)}" if self.candle_cursor
            else "No candle applied yet"
        )
        return out


def _bot_sessions(spec: BotSpec, status: str) -> ColumnElement[bool]:
    """The account rows of this bot (symbol, timeframe, exchange, mode) with ``status``: whatever the strategy."""
    return and_(
        TradingSession.symbol == spec.symbol,
        TradingSession.timeframe == spec.timeframe,
        TradingSession.exchange == spec.exchange,
        TradingSession.mode == spec.mode,
        TradingSession.status == status,
    )


def _find_active(db: Session, spec: BotSpec) -> TradingSession | None:
    return db.execute(select(TradingSession).where(_bot_sessions(spec, "active"))).scalar_one_or_none()


def _newest_ended(db: Session, spec: BotSpec) -> TradingSession | None:
    return db.execute(
        select(TradingSession)
        .where(_bot_sessions(spec, "ended"))
        .order_by(TradingSession.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _find_active_with_positions(db: Session, spec: BotSpec) -> tuple[TradingSession, list[Position]] | None:
    """The active account and its open positions (by id) in one statement: the session LEFT JOIN its open
    positions. Read path only (no lock): whoever changes money re-reads both under the session row lock."""
    rows = db.execute(
        select(TradingSession, Position)
        .outerjoin(Position, (Position.session_id == TradingSession.id) & (Position.status == "open"))
        .where(_bot_sessions(spec, "active"))
        .order_by(Position.id)
    ).all()
    if not rows:
        return None
    sessions = {row[0].id for row in rows}
    if len(sessions) > 1:  # the one-active-session index forbids this; fail as scalar_one_or_none() would
        raise MultipleResultsFound("more than one active session for " + spec.label)
    return rows[0][0], [row[1] for row in rows if row[1] is not None]


def _recovered(positions: list[Position]) -> tuple[RecoveredPosition, ...]:
    return tuple(
        RecoveredPosition(p.id, p.symbol, p.side, p.entry_price, p.quantity, p.stop_loss, p.take_profit,
                          p.entry_time)
        for p in positions
    )


def _opening(how: OpeningHow, session: TradingSession, spec: BotSpec, positions: list[Position],
             **extra: object) -> SessionOpening:
    return SessionOpening(
        how=how, session_id=session.id, spec=spec, total_balance=session.total_balance,
        available_balance=session.available_balance, reserved_balance=session.reserved_balance,
        unit_value=session.unit_value, peak_unit_value=session.peak_unit_value, candle_cursor=session.candle_cursor,
        positions=_recovered(positions), **extra,  # type: ignore[arg-type]
    )


def _switch(db: Session, session: TradingSession, strategy: str, actor: Actor, now: datetime) -> str | None:
    """Make ``strategy`` the account's strategy, recorded as a ``strategy_switch`` row; the old name, or None
    when it already trades it. The caller holds the lock."""
    old = session.strategy
    if old == strategy:
        return None
    session.strategy = strategy
    ledger.record_event(db, session, ledger.Kind.STRATEGY_SWITCH, reason=f"Strategy changed from {old} to {strategy}",
                        actor=actor, now=now)
    return old


def open_session(
    engine: Engine,
    spec: BotSpec,
    *,
    initial_balance: Decimal = Decimal(1000),
    resume: bool = True,
    fresh: bool = False,
    actor: Actor = SYSTEM,
    start_cursor: datetime | None = None,
    market_time: datetime | None = None,
) -> SessionOpening:
    """The bot's one account: the active one; else the newest stopped one, reopened (``resume``); else a new
    one with ``initial_balance``. ``fresh`` resets the account to ``initial_balance`` (recorded, same ledger).
    Running a different strategy on an existing account switches it (recorded).

    ``market_time`` is when in the market a new account begins: where the first candle it applies opens (default:
    ``start_cursor``'s close, else the open of the newest closed candle by the wall clock). Safe to call
    concurrently: the one-active-account index makes a second creator retry and find the first.
    """
    if spec.mode != "paper":
        raise LiveTradingDisabled("live trading is not implemented: this bot only paper-trades")
    if start_cursor is not None and market_time is None:
        market_time = start_cursor + timeframe_to_timedelta(spec.timeframe)
    elif market_time is None:  # live: the account begins where the first candle it applies (the newest closed) opens
        market_time = floor_to_grid(utcnow(), spec.timeframe) - timeframe_to_timedelta(spec.timeframe)
    for attempt in range(3):
        try:
            opening = _open_once(engine, spec, initial_balance=initial_balance, resume=resume, fresh=fresh,
                                 actor=actor, start_cursor=start_cursor, market_time=market_time)
        except IntegrityError:
            if attempt == 2:
                raise
            fresh = False  # someone else just created it: use theirs
            continue
        with_keys = {"session_id": opening.session_id, "strategy": spec.strategy, "symbol": spec.symbol}
        for line in opening.lines():
            logger.info(line, extra=with_keys)
        return opening
    raise AssertionError("unreachable")  # pragma: no cover


def _open_once(engine: Engine, spec: BotSpec, *, initial_balance: Decimal, resume: bool, fresh: bool,
               actor: Actor, start_cursor: datetime | None, market_time: datetime | None) -> SessionOpening:
    if not fresh:
        # The common case — the account exists and trades this strategy — needs no write transaction.
        with read_transaction(engine) as db:
            found = _find_active_with_positions(db, spec)
            if found is not None and found[0].strategy == spec.strategy:
                return _opening("found", found[0], spec, found[1])
    with write_transaction(engine) as db:
        now = utcnow()
        how: OpeningHow = "found"
        account = _find_active(db, spec)
        if account is None and (resume or fresh):
            account = _newest_ended(db, spec)
            if account is not None:
                account = ledger.lock_session(db, account.id)
                assert account is not None
                account.status, account.ended_at = "active", None
                db.flush()  # the one-active-account index sees it now
                ledger.record_event(db, account, ledger.Kind.REOPENED, actor=actor, now=now,
                                    reason="Bot started again: the same account carries on")
                how = "resumed"
        if account is None:
            session = ledger.start_session(
                db, strategy=spec.strategy, symbol=spec.symbol, timeframe=spec.timeframe, exchange=spec.exchange,
                mode=spec.mode, initial_balance=initial_balance, actor=actor, now=now, market_time=market_time,
            )
            session.candle_cursor = start_cursor
            session.pairs_from = start_cursor
            db.flush()
            return _opening("started", session, spec, [])
        locked = ledger.lock_session(db, account.id)
        assert locked is not None
        switched = _switch(db, locked, spec.strategy, actor, now)
        if fresh:
            ledger.record_reset(db, locked, initial_balance, actor=actor, now=now,
                                reason="Fresh start (--fresh --confirm): the account starts over")
            how = "fresh"
        return _opening(how, locked, spec, open_positions(db, locked.id), switched_from=switched)


def switch_strategy(engine: Engine, session_id: int, new_strategy: str, *,
                    actor: Actor = SYSTEM) -> SessionOpening:
    """Trade an active account with ``new_strategy`` from now on: the same account keeps its balance, open
    positions, cursor, units and peak; the ledger records the switch."""
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, session_id)
        assert session is not None
        if session.status != "active":
            raise SessionError(f"session #{session_id} has stopped; start it again with `atb live` to switch it")
        if session.strategy == new_strategy:
            raise SessionError(f"session #{session_id} already trades {new_strategy}")
        spec = BotSpec(strategy=new_strategy, symbol=session.symbol, timeframe=session.timeframe,
                       exchange=session.exchange, mode=session.mode)
        old = _switch(db, session, new_strategy, actor, utcnow())
        opening = _opening("found", session, spec, open_positions(db, session.id), switched_from=old,
                           reason=f"strategy {old} → {new_strategy}")
    for line in opening.lines():
        logger.info(line)
    return opening
