"""The ledger service: the only code that changes a session's money.

Every change is one append-only ``account_balances`` row (delta, balance after, kind, reason, who, reference)
written in the same transaction as the session's cached balance. Each call first takes the session row lock
(``SELECT … FOR UPDATE`` on Postgres; SQLite write transactions hold the database lock from ``BEGIN
IMMEDIATE``), then reads the balance, so two writers in any interleaving give the result of one after the other.

Bookkeeping: ``total = cash + cost of open positions``, ``reserved = cost of open positions``,
``available = total − reserved`` (the cash), never negative. The peak balance, from which drawdown is measured,
follows trading results; capital flows (deposits, withdrawals, manual sets, resets) move it by the same amount so
that adding or removing capital is not mistaken for a trading gain or loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from chalicelib.db.models import LEDGER_KINDS, AccountBalance, Position, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.money import ZERO, money_text, quantize_money

#: Kinds that move capital in or out (they shift the peak instead of setting a new one).
CAPITAL_FLOW_KINDS = frozenset({"initial", "manual_set", "deposit", "withdrawal", "reset", "resumed"})
MAX_REASON_LENGTH = 200
MAX_ACTOR_LENGTH = 100


class LedgerError(Exception):
    """A change the ledger refuses; nothing was written."""

    code = "ledger_error"


class SessionNotFound(LedgerError):
    code = "session_not_found"


class InsufficientFunds(LedgerError):
    """The change would leave available balance below zero."""

    code = "insufficient_funds"


class InvalidChange(LedgerError):
    code = "invalid_change"


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the authenticated name, and optionally a free-text label they typed."""

    name: str
    label: str | None = None


SYSTEM = Actor("system")


def lock_session(db: Session, session_id: int, *, skip_locked: bool = False) -> TradingSession | None:
    """Lock and load a session row. With ``skip_locked`` returns None when another transaction holds it."""
    stmt = select(TradingSession).where(TradingSession.id == session_id)
    stmt = stmt.with_for_update(skip_locked=skip_locked)
    session = db.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    if session is None and not skip_locked:
        raise SessionNotFound(f"no trading session #{session_id}")
    return session


def base_asset(symbol: str) -> str:
    """``BTCUSDT`` → ``BTC``; ``BTC/USDT`` → ``BTC``."""
    from chalicelib.trading.symbols import parse_symbol

    return parse_symbol(symbol).base


def open_positions(db: Session, session_id: int) -> list[Position]:
    """A session's open positions, oldest first."""
    return list(
        db.execute(
            select(Position)
            .where(Position.session_id == session_id, Position.status == "open")
            .order_by(Position.id)
        ).scalars()
    )


def held_quantities(positions: list[Position]) -> dict[str, Decimal]:
    """Quantity held per base asset in these positions (for ``asset_balances``)."""
    held: dict[str, Decimal] = {}
    for p in positions:
        asset = base_asset(p.symbol)
        held[asset] = held.get(asset, ZERO) + p.quantity
    return held


def open_quantities(db: Session, session_id: int) -> dict[str, Decimal]:
    """Quantity held per base asset in the session's open positions."""
    return held_quantities(open_positions(db, session_id))


def _check_text(value: str, what: str, limit: int) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise InvalidChange(f"{what} must not be empty")
    if len(cleaned) > limit:
        raise InvalidChange(f"{what} is longer than {limit} characters")
    return cleaned


def _entry(
    session: TradingSession,
    *,
    kind: str,
    delta: Decimal,
    reason: str,
    actor: Actor,
    reserved_delta: Decimal,
    reference: str | None,
    held: Mapping[str, Decimal],
    when: datetime,
) -> tuple[dict[str, Any], Decimal]:
    """Check one change against the session's current balance and compute its ledger row (column values) and
    the new peak. Raises before anything is written; changes nothing."""
    if kind not in LEDGER_KINDS:
        raise InvalidChange(f"unknown ledger kind {kind!r}")
    if delta != quantize_money(delta) or reserved_delta != quantize_money(reserved_delta):
        raise InvalidChange("amounts carry at most 8 decimal places")
    reason = _check_text(reason, "reason", MAX_REASON_LENGTH)
    name = _check_text(actor.name, "updated_by", MAX_ACTOR_LENGTH)
    label = actor.label.strip()[:MAX_ACTOR_LENGTH] if actor.label and actor.label.strip() else None

    total = session.total_balance + delta
    reserved = session.reserved_balance + reserved_delta
    available = total - reserved
    if reserved < 0:
        raise InvalidChange(f"reserved balance would be negative ({money_text(reserved)})")
    if available < 0:
        raise InsufficientFunds(
            f"available balance would be {money_text(available)} {session.base_currency} "
            f"(total {money_text(total)}, of which {money_text(reserved)} is held by open positions)"
        )

    assets = {session.base_currency: money_text(available)}
    assets.update({asset: format(qty.normalize(), "f") for asset, qty in sorted(held.items()) if qty})

    if kind in CAPITAL_FLOW_KINDS:
        peak = max(session.peak_balance + delta, total)
    else:
        peak = max(session.peak_balance, total)
    if kind in ("initial", "reset", "resumed"):
        peak = total

    row = {
        "session_id": session.id,
        "base_currency": session.base_currency,
        "kind": kind,
        "delta": delta,
        "total_balance": total,
        "available_balance": available,
        "reserved_balance": reserved,
        "asset_balances": assets,
        "reference": reference,
        "last_updated": when,
        "updated_by": name,
        "updated_by_label": label,
        "update_reason": reason,
    }
    return row, peak


def post(
    db: Session,
    session: TradingSession,
    *,
    kind: str,
    delta: Decimal,
    reason: str,
    actor: Actor = SYSTEM,
    reserved_delta: Decimal = ZERO,
    reference: str | None = None,
    held: Mapping[str, Decimal] | None = None,
    now: datetime | None = None,
) -> AccountBalance:
    """Append one ledger row and update the session's cached balance. The caller holds the session lock.

    ``held`` is the base-asset quantity per asset after the change (default: read from open positions).
    """
    if held is None:
        reserved = session.reserved_balance + reserved_delta
        held = open_quantities(db, session.id) if reserved > 0 or reserved_delta != 0 else {}
    values, peak = _entry(session, kind=kind, delta=delta, reason=reason, actor=actor, reserved_delta=reserved_delta,
                          reference=reference, held=held, when=now or utcnow())
    row = AccountBalance(**values)
    db.add(row)
    session.total_balance = values["total_balance"]
    session.reserved_balance = values["reserved_balance"]
    session.available_balance = values["available_balance"]
    session.peak_balance = peak
    session.version = session.version + 1
    db.flush()
    return row


_LEDGER_TABLE = cast(Table, AccountBalance.__table__)
_SESSION_TABLE = cast(Table, TradingSession.__table__)


class Batch:
    """The ledger for one tick: every change is checked and computed at once, under the session lock, exactly
    as :func:`post` would (same rows, same order, same errors), and :meth:`write` then inserts the rows with
    one statement and updates the session row with one ``UPDATE … WHERE id`` — instead of one ORM flush per
    row. The caller holds the session lock and must call :meth:`write` before its transaction commits.

    The session object shows each new balance at once (set without ORM change tracking, so the ORM never writes
    it a second time); nothing reaches the database until :meth:`write`.
    """

    _COLUMNS = ("total_balance", "available_balance", "reserved_balance", "peak_balance", "version")

    def __init__(self, db: Session, session: TradingSession) -> None:
        self.db = db
        self.session = session
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}

    def post(self, *, kind: str, delta: Decimal, reason: str, held: Mapping[str, Decimal], now: datetime,
             actor: Actor = SYSTEM, reserved_delta: Decimal = ZERO, reference: str | None = None) -> None:
        values, peak = _entry(self.session, kind=kind, delta=delta, reason=reason, actor=actor,
                              reserved_delta=reserved_delta, reference=reference, held=held, when=now)
        self.rows.append(values)
        s = self.session
        for key, value in (("total_balance", values["total_balance"]), ("reserved_balance", values["reserved_balance"]),
                           ("available_balance", values["available_balance"]), ("peak_balance", peak),
                           ("version", s.version + 1)):
            set_committed_value(s, key, value)

    def position_opened(self, *, cost: Decimal, fee: Decimal, reference: str, held: Mapping[str, Decimal],
                        now: datetime) -> None:
        """As :func:`record_position_opened`."""
        self.post(**_position_opened(cost, fee), reference=reference, held=held, now=now)

    def trade_pnl(self, *, pnl: Decimal, released_cost: Decimal, reference: str, held: Mapping[str, Decimal],
                  now: datetime) -> None:
        """As :func:`record_trade_pnl`."""
        self.post(**_trade_pnl(pnl, released_cost), reference=reference, held=held, now=now)

    def fee(self, fee: Decimal, *, reason: str, reference: str, held: Mapping[str, Decimal], now: datetime) -> None:
        """As :func:`record_fee`."""
        self.post(kind="fee", delta=-fee, reason=reason, reference=reference, held=held, now=now)

    def set(self, **columns: Any) -> None:
        """Other session columns (the tick's cursor) to write with the balance, in the same UPDATE."""
        for key, value in columns.items():
            self.extra[key] = value
            set_committed_value(self.session, key, value)

    def write(self) -> None:
        """Insert the rows (one multi-row INSERT) and update the session row (one UPDATE). Pending ORM changes
        (positions, trades) are flushed first, as :func:`post` would have."""
        db, s = self.db, self.session
        db.flush()
        conn = db.connection()
        if self.rows:
            conn.execute(insert(_LEDGER_TABLE).returning(_LEDGER_TABLE.c.id), self.rows)  # RETURNING: batched
            self.rows = []
        values = {key: getattr(s, key) for key in self._COLUMNS}
        values.update(self.extra)
        conn.execute(update(_SESSION_TABLE).where(_SESSION_TABLE.c.id == s.id).values(values))


# --- the named operations --------------------------------------------------------------------------------------


def start_session(
    db: Session,
    *,
    strategy: str,
    symbol: str,
    timeframe: str,
    exchange: str,
    mode: str,
    initial_balance: Decimal,
    actor: Actor = SYSTEM,
    reason: str = "Initial capital",
    now: datetime | None = None,
    resumed_from: TradingSession | None = None,
    carried_cost: Decimal = ZERO,
    carried_peak: Decimal | None = None,
    held: Mapping[str, Decimal] | None = None,
    fresh_start: bool = False,
) -> TradingSession:
    """Create an active session and record its starting capital as the first ledger row.

    The first row's kind says how the session began: ``initial``, ``resumed`` (carried over from
    ``resumed_from``) or ``reset`` (a deliberate fresh start). A resumed session may carry open positions over:
    ``carried_cost`` (their cost, part of ``initial_balance``) is reserved in that same first row, ``held`` names
    the base-asset quantities they hold, and ``carried_peak`` keeps the drawdown reference, so that resuming or
    switching strategy never resets the drawdown limit.
    """
    if mode not in ("paper", "live"):
        raise InvalidChange(f"mode must be paper or live, not {mode!r}")
    if initial_balance < 0:
        raise InvalidChange("initial balance must not be negative")
    when = now or utcnow()
    session = TradingSession(
        strategy=strategy,
        symbol=symbol,
        timeframe=timeframe,
        exchange=exchange,
        mode=mode,
        status="active",
        initial_balance=initial_balance,
        base_currency="USD",
        total_balance=ZERO,
        available_balance=ZERO,
        reserved_balance=ZERO,
        peak_balance=ZERO,
        version=0,
        started_at=when,
        resumed_from_id=resumed_from.id if resumed_from else None,
    )
    db.add(session)
    db.flush()
    post(
        db,
        session,
        kind="resumed" if resumed_from else "reset" if fresh_start else "initial",
        delta=initial_balance,
        reason=reason,
        actor=actor,
        reserved_delta=carried_cost,
        held=held or {},
        now=when,
    )
    if carried_peak is not None:
        session.peak_balance = max(carried_peak, session.total_balance)
    return session


def record_manual_set(
    db: Session, session: TradingSession, new_total: Decimal, *, reason: str, actor: Actor,
    reference: str | None = None, now: datetime | None = None,
) -> AccountBalance:
    """Set the total balance to an absolute amount; the row records the difference."""
    if new_total < 0:
        raise InvalidChange("balance must not be negative")
    return post(db, session, kind="manual_set", delta=new_total - session.total_balance, reason=reason,
                actor=actor, reference=reference, now=now)


def record_deposit(
    db: Session, session: TradingSession, amount: Decimal, *, reason: str, actor: Actor,
    reference: str | None = None, now: datetime | None = None,
) -> AccountBalance:
    if amount <= 0:
        raise InvalidChange("a deposit must be greater than zero")
    return post(db, session, kind="deposit", delta=amount, reason=reason, actor=actor, reference=reference,
                now=now)


def record_withdrawal(
    db: Session, session: TradingSession, amount: Decimal, *, reason: str, actor: Actor,
    reference: str | None = None, now: datetime | None = None,
) -> AccountBalance:
    if amount <= 0:
        raise InvalidChange("a withdrawal must be greater than zero")
    return post(db, session, kind="withdrawal", delta=-amount, reason=reason, actor=actor,
                reference=reference, now=now)


def record_reset(
    db: Session, session: TradingSession, new_total: Decimal, *, reason: str, actor: Actor,
    now: datetime | None = None,
) -> AccountBalance:
    """Start over at ``new_total``. Refused while positions are open (close them first)."""
    if session.reserved_balance != 0:
        raise InsufficientFunds("cannot reset while positions are open; close them first")
    if new_total < 0:
        raise InvalidChange("balance must not be negative")
    return post(db, session, kind="reset", delta=new_total - session.total_balance, reason=reason,
                actor=actor, now=now)


def _position_opened(cost: Decimal, fee: Decimal) -> dict[str, Any]:
    return {"kind": "fee", "delta": -fee, "reserved_delta": cost, "reason": "Entry fee"}


def _trade_pnl(pnl: Decimal, released_cost: Decimal) -> dict[str, Any]:
    return {"kind": "trade_pnl", "delta": pnl, "reserved_delta": -released_cost, "reason": "Realised P&L"}


def record_position_opened(
    db: Session, session: TradingSession, *, cost: Decimal, fee: Decimal, reference: str,
    held: Mapping[str, Decimal] | None = None, now: datetime | None = None,
) -> AccountBalance:
    """Reserve a new position's cost and charge its entry fee (one ``fee`` row)."""
    return post(db, session, **_position_opened(cost, fee), held=held, reference=reference, now=now)


def record_trade_pnl(
    db: Session, session: TradingSession, *, pnl: Decimal, released_cost: Decimal, reference: str,
    held: Mapping[str, Decimal] | None = None, now: datetime | None = None,
) -> AccountBalance:
    """Release a closed position's cost and book its gross realised P&L."""
    return post(db, session, **_trade_pnl(pnl, released_cost), reference=reference, held=held, now=now)


def record_fee(
    db: Session, session: TradingSession, fee: Decimal, *, reason: str, reference: str,
    held: Mapping[str, Decimal] | None = None, now: datetime | None = None,
) -> AccountBalance:
    return post(db, session, kind="fee", delta=-fee, reason=reason, reference=reference, held=held, now=now)


def latest_entry(db: Session, session_id: int) -> AccountBalance | None:
    return db.execute(
        select(AccountBalance)
        .where(AccountBalance.session_id == session_id)
        .order_by(AccountBalance.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def entry_by_reference(db: Session, session_id: int, reference: str) -> AccountBalance | None:
    return db.execute(
        select(AccountBalance).where(
            AccountBalance.session_id == session_id, AccountBalance.reference == reference
        ).limit(1)
    ).scalar_one_or_none()


def count_entries(db: Session, session_id: int) -> int:
    return int(
        db.execute(select(func.count()).where(AccountBalance.session_id == session_id)).scalar_one()
    )
