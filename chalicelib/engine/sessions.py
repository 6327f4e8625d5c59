"""Which session a bot trades in, and what it recovered: find the active one, resume the newest ended one, or
start fresh; switch a session's strategy. Each is one write transaction.

A bot is (strategy, symbol, timeframe, mode); the database allows one active session per bot. Resuming carries
the ended session's balance, open positions and candle cursor into a new session: the old session's ledger
records the money leaving ("Carried over to session #N", a withdrawal that also releases the positions' cost)
and the new session's first row (``resumed``) receives it, reserving the carried positions' cost. The
positions themselves move to the new session, so each session's ledger still adds up on its own and the old
history stays readable. Switching strategy is the same carry-over with a reason that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import ColumnElement, Engine, and_, select
from sqlalchemy.exc import IntegrityError, MultipleResultsFound
from sqlalchemy.orm import Session

from chalicelib import ledger
from chalicelib.bots import BotSpec
from chalicelib.db.models import Position, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.engine.observability import logger
from chalicelib.ledger import SYSTEM, Actor, held_quantities, open_positions
from chalicelib.money import ZERO, format_usd
from chalicelib.trading.candles import format_time

MODES = ("paper", "live")


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


@dataclass(frozen=True)
class SessionOpening:
    """What opening a bot's session found or did — the lines a trader reads on start (promise 6)."""

    how: Literal["found", "resumed", "started", "fresh"]
    session_id: int
    spec: BotSpec
    total_balance: Decimal
    available_balance: Decimal
    reserved_balance: Decimal
    peak_balance: Decimal
    candle_cursor: datetime | None
    positions: tuple[RecoveredPosition, ...] = ()
    previous_session_id: int | None = None
    ended_session_id: int | None = None
    reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def lines(self) -> list[str]:
        sid = self.session_id
        out: list[str] = []
        if self.ended_session_id is not None:
            out.append(f"Ended session #{self.ended_session_id} (its history stays readable)")
        if self.how == "found":
            out.append(f"Found active session #{sid} ({self.spec.label})")
        elif self.how == "resumed":
            out.append(f"Resumed session #{sid} ({self.spec.label}) from ended session #{self.previous_session_id}")
        else:
            word = "Started fresh session" if self.how == "fresh" else "Started session"
            out.append(f"{word} #{sid} ({self.spec.label}) with initial balance {format_usd(self.total_balance)}")
        if self.how in ("found", "resumed"):
            out.append(f"Recovered balance for session #{sid}: {format_usd(self.total_balance)} "
                       f"(available {format_usd(self.available_balance)}, reserved "
                       f"{format_usd(self.reserved_balance)}, peak {format_usd(self.peak_balance)})")
            out.extend(f"Recovered position: {p.describe()}" for p in self.positions)
            if not self.positions:
                out.append("No open positions")
        out.append(
            f"Next candle after {format_time(self.candle_cursor)}" if self.candle_cursor
            else "No candle applied yet"
        )
        return out


def _bot_sessions(spec: BotSpec, status: str) -> ColumnElement[bool]:
    """The sessions of this bot (strategy, symbol, timeframe, mode) with ``status``."""
    return and_(
        TradingSession.strategy == spec.strategy,
        TradingSession.symbol == spec.symbol,
        TradingSession.timeframe == spec.timeframe,
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
    """The active session and its open positions (by id) in one statement: the session LEFT JOIN its open
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


def _opening(how: Literal["found", "resumed", "started", "fresh"], session: TradingSession, spec: BotSpec,
             positions: list[Position], **extra: object) -> SessionOpening:
    return SessionOpening(
        how=how, session_id=session.id, spec=spec, total_balance=session.total_balance,
        available_balance=session.available_balance, reserved_balance=session.reserved_balance,
        peak_balance=session.peak_balance, candle_cursor=session.candle_cursor, positions=_recovered(positions),
        **extra,  # type: ignore[arg-type]
    )


def _end(session: TradingSession, now: datetime) -> None:
    session.status = "ended"
    session.ended_at = now


def carry_over(db: Session, old: TradingSession, spec: BotSpec, *, reason: str, actor: Actor = SYSTEM,
               now: datetime | None = None) -> tuple[TradingSession, list[Position]]:
    """Move ``old``'s balance, open positions and cursor into a new active session for ``spec``.

    The caller holds ``old``'s lock. ``old`` ends (if it was active) and its ledger records the money leaving.
    """
    when = now or utcnow()
    positions = open_positions(db, old.id)
    cost = sum((p.cost for p in positions), ZERO)
    total = old.total_balance
    if old.status == "active":
        _end(old, when)
        db.flush()  # the one-active-session index must see the old one ended before the new one exists
    new = ledger.start_session(
        db, strategy=spec.strategy, symbol=spec.symbol, timeframe=spec.timeframe, exchange=spec.exchange,
        mode=spec.mode, initial_balance=total, actor=actor, reason=reason, now=when, resumed_from=old,
        carried_cost=cost, carried_peak=old.peak_balance, held=held_quantities(positions),
    )
    new.candle_cursor = old.candle_cursor
    for p in positions:
        p.session_id = new.id
    if total != 0 or old.reserved_balance != 0:
        ledger.post(db, old, kind="withdrawal", delta=-total, reserved_delta=-cost,
                    reason=f"Carried over to session #{new.id}", actor=actor, reference=f"carried-to:{new.id}",
                    held={}, now=when)
    return new, positions


def open_session(
    engine: Engine | None,
    spec: BotSpec,
    *,
    initial_balance: Decimal = Decimal(1000),
    resume: bool = True,
    fresh: bool = False,
    actor: Actor = SYSTEM,
    start_cursor: datetime | None = None,
) -> SessionOpening:
    """The session this bot trades in: the active one; else one resumed from the newest ended one (``resume``);
    else a new one with ``initial_balance``. ``fresh`` ends an active session and starts anew (no carry-over).

    Safe to call concurrently: the one-active-session index makes a second creator retry and find the first.
    """
    if spec.mode != "paper":
        raise LiveTradingDisabled("live trading is not implemented: this bot only paper-trades")
    for attempt in range(3):
        try:
            opening = _open_once(engine, spec, initial_balance=initial_balance, resume=resume, fresh=fresh,
                                 actor=actor, start_cursor=start_cursor)
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


def _open_once(engine: Engine | None, spec: BotSpec, *, initial_balance: Decimal, resume: bool, fresh: bool,
               actor: Actor, start_cursor: datetime | None) -> SessionOpening:
    if not fresh:
        # The common case — the session exists — needs no write transaction.
        with read_transaction(engine) as db:
            found = _find_active_with_positions(db, spec)
            if found is not None:
                return _opening("found", found[0], spec, found[1])
    with write_transaction(engine) as db:
        now = utcnow()
        active = _find_active(db, spec)
        ended_id: int | None = None
        if active is not None:
            locked = ledger.lock_session(db, active.id)
            assert locked is not None
            if not fresh:
                return _opening("found", locked, spec, open_positions(db, locked.id))
            _end(locked, now)
            ended_id = locked.id
            db.flush()
        elif resume and not fresh:
            previous = _newest_ended(db, spec)
            if previous is not None:
                old = ledger.lock_session(db, previous.id)
                assert old is not None
                new, positions = carry_over(
                    db, old, spec, actor=actor, now=now,
                    reason=f"Resumed from session #{old.id}: balance and open positions carried over",
                )
                return _opening("resumed", new, spec, positions, previous_session_id=old.id)
        reason = "Initial capital"
        if fresh:
            reason = "Fresh start (--fresh): initial capital" + (
                f"; session #{ended_id} ended, not resumed" if ended_id else "")
        session = ledger.start_session(
            db, strategy=spec.strategy, symbol=spec.symbol, timeframe=spec.timeframe, exchange=spec.exchange,
            mode=spec.mode, initial_balance=initial_balance, actor=actor, reason=reason, now=now,
            fresh_start=fresh,
        )
        session.candle_cursor = start_cursor
        db.flush()
        return _opening("fresh" if fresh else "started", session, spec, [], ended_session_id=ended_id)


def switch_strategy(engine: Engine | None, session_id: int, new_strategy: str, *,
                    actor: Actor = SYSTEM) -> SessionOpening:
    """Change an active session's strategy: its balance, open positions and cursor carry over to a session
    for the new strategy, and both ledgers record why."""
    with write_transaction(engine) as db:
        old = ledger.lock_session(db, session_id)
        assert old is not None
        if old.status != "active":
            raise SessionError(f"session #{session_id} has ended; only an active session can switch strategy")
        if old.strategy == new_strategy:
            raise SessionError(f"session #{session_id} already trades {new_strategy}")
        spec = BotSpec(strategy=new_strategy, symbol=old.symbol, timeframe=old.timeframe, exchange=old.exchange,
                       mode=old.mode)
        if _find_active(db, spec) is not None:
            raise SessionError(f"a {spec.label} session is already active; stop it first")
        new, positions = carry_over(
            db, old, spec, actor=actor,
            reason=f"Strategy changed from {old.strategy} to {new_strategy} (session #{old.id})",
        )
        opening = _opening("resumed", new, spec, positions, previous_session_id=old.id,
                           reason=f"strategy {old.strategy} → {new_strategy}")
    for line in opening.lines():
        logger.info(line)
    return opening
