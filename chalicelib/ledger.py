"""The ledger service: the only code that changes a session's money.

Every change is one append-only ``account_balances`` row (delta, balance after, kind, reason, who, reference,
units, market time) written in the same transaction as the session's cached balance. Each call first takes the
session row lock (``SELECT … FOR UPDATE`` on Postgres; SQLite write transactions hold the database lock from
``BEGIN IMMEDIATE``), then reads the balance, so two writers in any interleaving give the result of one after the
other.

Bookkeeping: ``total = cash + cost of open positions``, ``reserved = cost of open positions``,
``available = total − reserved`` (the cash), never negative. Beside it the account keeps units
(``chalicelib.accounting``): equity = cash + open positions marked at the last close; a capital flow (deposit,
withdrawal, manual set) issues or redeems units at the value per unit, trading moves the value per unit, and the
drawdown is measured on the value per unit, so adding or removing capital never looks like a gain or a loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from chalicelib import accounting
from chalicelib.accounting import UnitState
from chalicelib.db.models import LEDGER_KINDS, AccountBalance, Position, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.money import ZERO, format_usd, money_text, quantize_money

#: Kinds that move capital in or out at the value per unit (units issued or redeemed; performance unchanged).
CAPITAL_FLOW_KINDS = frozenset({"deposit", "withdrawal", "manual_set"})
#: Kinds that start a unit series at a value per unit of 1 (the first row of an account, and a reset).
SERIES_START_KINDS = frozenset({"initial", "recovered_from_trades", "resumed", "reset"})
#: Kinds a ledger may begin with.
OPENING_KINDS = frozenset({"initial", "recovered_from_trades", "resumed", "reset"})
#: Trading results: they move the value per unit.
TRADING_KINDS = frozenset({"trade_pnl", "fee"})
#: Events in the account's timeline that move no money (delta 0): a strategy switch, a stopped bot reopened.
EVENT_KINDS = frozenset({"strategy_switch", "reopened"})
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


def marked_value(positions: Sequence[Position], mark: Decimal | None) -> Decimal:
    """What open positions are worth at ``mark`` (the last close); at cost while no candle has been applied."""
    if mark is None:
        return sum((p.cost for p in positions), ZERO)
    return accounting.marked_value((p.quantity for p in positions), mark)


def unit_state(session: TradingSession) -> UnitState:
    """The account's units as the session row caches them."""
    return UnitState(units=session.units, unit_value=session.unit_value, peak_unit_value=session.peak_unit_value,
                     series_base=session.series_base)


def equity_of(session: TradingSession, positions: Sequence[Position], mark: Decimal | None = None) -> Decimal:
    """Equity: cash plus open positions marked at ``mark`` (default: the session's last close)."""
    return accounting.equity(session.available_balance,
                             marked_value(positions, mark if mark is not None else session.mark_price))


def _check_text(value: str, what: str, limit: int) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise InvalidChange(f"{what} must not be empty")
    if len(cleaned) > limit:
        raise InvalidChange(f"{what} is longer than {limit} characters")
    return cleaned


@dataclass(frozen=True)
class Posting:
    """One checked change: the ledger row's columns and the session's cached columns after it."""

    row: dict[str, Any]
    session: dict[str, Any]


def _units_after(session: TradingSession, kind: str, delta: Decimal, equity: Decimal) -> tuple[UnitState, Decimal]:
    """The account's units and net contributions after a change of ``kind`` that leaves equity at ``equity``."""
    state = unit_state(session)
    if kind in SERIES_START_KINDS:
        return accounting.new_series(state, equity), session.total_balance + delta
    if kind in CAPITAL_FLOW_KINDS:
        return accounting.after_flow(state, equity - delta, delta), session.net_contributions + delta
    if kind in TRADING_KINDS:
        return accounting.after_trading(state, equity), session.net_contributions
    return state, session.net_contributions


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
    positions_value: Decimal | None,
    market_time: datetime | None,
) -> Posting:
    """Check one change against the session's current balance and compute its ledger row and the session's new
    cached values. ``positions_value`` is what the open positions are worth after the change at the current mark
    (None: at cost). Raises before anything is written; changes nothing."""
    if kind not in LEDGER_KINDS:
        raise InvalidChange(f"unknown ledger kind {kind!r}")
    if kind in EVENT_KINDS and (delta != 0 or reserved_delta != 0):
        raise InvalidChange(f"a {kind} row moves no money")
    if delta != quantize_money(delta) or reserved_delta != quantize_money(reserved_delta):
        raise InvalidChange("amounts carry at most 8 decimal places")
    reason = _check_text(reason, "reason", MAX_REASON_LENGTH)
    name = _check_text(actor.name, "updated_by", MAX_ACTOR_LENGTH)
    label = actor.label.strip()[:MAX_ACTOR_LENGTH] if actor.label and actor.label.strip() else None

    total = session.total_balance + delta
    reserved = session.reserved_balance + reserved_delta
    available = total - reserved
    if reserved < 0:
        raise InvalidChange(f"reserved balance would be negative ({format_usd(reserved)})")
    if available < 0:
        raise InsufficientFunds(
            f"available balance would be {format_usd(available)} {session.base_currency} "
            f"(total {format_usd(total)}, of which {format_usd(reserved)} is held by open positions)"
        )
    equity = available + (reserved if positions_value is None else positions_value)
    state, contributions = _units_after(session, kind, delta, equity)

    assets = {session.base_currency: money_text(available)}
    assets.update({asset: format(qty.normalize(), "f") for asset, qty in sorted(held.items()) if qty})

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
        "units": state.units,
        "unit_value": state.unit_value,
        "performance_index": state.performance_index,
        "equity": equity,
        "market_time": market_time or session.market_time or when,
        "last_updated": when,
        "updated_by": name,
        "updated_by_label": label,
        "update_reason": reason,
    }
    cached = {
        "total_balance": total,
        "available_balance": available,
        "reserved_balance": reserved,
        "units": state.units,
        "unit_value": state.unit_value,
        "peak_unit_value": state.peak_unit_value,
        "series_base": state.series_base,
        "net_contributions": contributions,
        "version": session.version + 1,
    }
    return Posting(row, cached)


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
    positions_value: Decimal | None = None,
    now: datetime | None = None,
    market_time: datetime | None = None,
) -> AccountBalance:
    """Append one ledger row and update the session's cached balance. The caller holds the session lock.

    Without ``held`` and ``positions_value`` both are read from the open positions after the change, valued at the
    session's last close.
    """
    if held is None or positions_value is None:
        positions = open_positions(db, session.id)
        held = held_quantities(positions) if held is None else held
        positions_value = marked_value(positions, session.mark_price) if positions_value is None else positions_value
    posting = _entry(session, kind=kind, delta=delta, reason=reason, actor=actor, reserved_delta=reserved_delta,
                     reference=reference, held=held, when=now or utcnow(), positions_value=positions_value,
                     market_time=market_time)
    row = AccountBalance(**posting.row)
    db.add(row)
    for key, value in posting.session.items():
        setattr(session, key, value)
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

    _COLUMNS = ("total_balance", "available_balance", "reserved_balance", "units", "unit_value", "peak_unit_value",
                "series_base", "net_contributions", "version", "mark_price", "market_time")

    def __init__(self, db: Session, session: TradingSession) -> None:
        self.db = db
        self.session = session
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}

    def _cache(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            set_committed_value(self.session, key, value)

    def post(self, *, kind: str, delta: Decimal, reason: str, held: Mapping[str, Decimal], now: datetime,
             positions_value: Decimal, market_time: datetime, actor: Actor = SYSTEM, reserved_delta: Decimal = ZERO,
             reference: str | None = None) -> None:
        posting = _entry(self.session, kind=kind, delta=delta, reason=reason, actor=actor,
                         reserved_delta=reserved_delta, reference=reference, held=held, when=now,
                         positions_value=positions_value, market_time=market_time)
        self.rows.append(posting.row)
        self._cache(posting.session)

    def position_opened(self, *, cost: Decimal, fee: Decimal, reference: str, held: Mapping[str, Decimal],
                        positions_value: Decimal, now: datetime, market_time: datetime) -> None:
        """Reserve a new position's cost and charge its entry fee (one ``fee`` row)."""
        self.post(**_position_opened(cost, fee), reference=reference, held=held, positions_value=positions_value,
                  now=now, market_time=market_time)

    def position_closed(self, *, position_id: int, pnl: Decimal, exit_fee: Decimal, released_cost: Decimal,
                        exit_reason: str, held: Mapping[str, Decimal], positions_value: Decimal, now: datetime,
                        market_time: datetime) -> None:
        """A position sold: its cost released with the exit fee charged (one ``fee`` row), then its gross
        realised P&L (one ``trade_pnl`` row, last, so the account's last reason reads ``trade_pnl_<exit>``)."""
        for kwargs in _position_closed(position_id, pnl, exit_fee, released_cost, exit_reason):
            self.post(**kwargs, held=held, positions_value=positions_value, now=now, market_time=market_time)

    def mark(self, *, close: Decimal, equity: Decimal, market_time: datetime) -> None:
        """The candle closed at ``close``: open positions are marked there, which moves the value per unit (and
        the peak) without a ledger row."""
        state = accounting.after_trading(unit_state(self.session), equity)
        self._cache({"unit_value": state.unit_value, "peak_unit_value": state.peak_unit_value, "mark_price": close,
                     "market_time": market_time})

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
    market_time: datetime | None = None,
) -> TradingSession:
    """Create a bot's account and record its starting capital as the first ledger row (``initial``), which starts
    the first unit series at a value per unit of 1. ``market_time`` is when in the market the account begins
    (default: the wall clock)."""
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
        units=ZERO,
        unit_value=accounting.ONE,
        peak_unit_value=accounting.ONE,
        series_base=accounting.ONE,
        net_contributions=ZERO,
        version=0,
        started_at=when,
        market_time=market_time,
    )
    db.add(session)
    db.flush()
    post(db, session, kind="initial", delta=initial_balance, reason=reason, actor=actor, held={},
         positions_value=ZERO, now=when, market_time=market_time or when)
    return session


def record_manual_set(
    db: Session, session: TradingSession, new_total: Decimal, *, reason: str, actor: Actor,
    reference: str | None = None, now: datetime | None = None,
) -> AccountBalance:
    """Set the total balance to an absolute amount; the row records the difference (a capital flow)."""
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
    """Start the account over at ``new_total`` (``--fresh --confirm``): open positions are written off (closed
    with exit reason ``reset``, no price and no P&L: a paper position is simply dropped), their reservation is
    released, and a new unit series begins. The history before it stays in the same ledger."""
    if new_total < 0:
        raise InvalidChange("balance must not be negative")
    when = now or utcnow()
    for position in open_positions(db, session.id):
        position.status = "closed"
        position.exit_reason = "reset"
        position.exit_time = session.market_time or when
    return post(db, session, kind="reset", delta=new_total - session.total_balance,
                reserved_delta=-session.reserved_balance, reason=reason, actor=actor, held={},
                positions_value=ZERO, now=when)


def record_event(
    db: Session, session: TradingSession, kind: str, *, reason: str, actor: Actor, now: datetime | None = None,
) -> AccountBalance:
    """A moment in the account's timeline that moves no money (a strategy switch, a stopped bot reopened)."""
    if kind not in EVENT_KINDS:
        raise InvalidChange(f"{kind!r} is not an event kind")
    return post(db, session, kind=kind, delta=ZERO, reason=reason, actor=actor, now=now)


def _position_opened(cost: Decimal, fee: Decimal) -> dict[str, Any]:
    return {"kind": "fee", "delta": -fee, "reserved_delta": cost, "reason": "trade_entry_fee"}


def _position_closed(position_id: int, pnl: Decimal, exit_fee: Decimal, released_cost: Decimal,
                     exit_reason: str) -> list[dict[str, Any]]:
    return [
        {"kind": "fee", "delta": -exit_fee, "reserved_delta": -released_cost,
         "reason": f"trade_exit_fee_{exit_reason}", "reference": trade_reference(position_id, "exit_fee")},
        {"kind": "trade_pnl", "delta": pnl, "reason": f"trade_pnl_{exit_reason}",
         "reference": trade_reference(position_id, "pnl")},
    ]


def position_reference(position_id: int) -> str:
    """The reference of a position's opening row (entry fee and reservation)."""
    return f"position:{position_id}:open"


def trade_reference(position_id: int, part: str) -> str:
    """The references of a closed position's rows: ``trade:{id}:pnl`` and ``trade:{id}:exit_fee``."""
    return f"trade:{position_id}:{part}"


def record_position_opened(
    db: Session, session: TradingSession, *, cost: Decimal, fee: Decimal, reference: str,
    held: Mapping[str, Decimal] | None = None, now: datetime | None = None,
) -> AccountBalance:
    """Reserve a new position's cost and charge its entry fee (one ``fee`` row)."""
    return post(db, session, **_position_opened(cost, fee), held=held, reference=reference, now=now)


def record_position_closed(
    db: Session, session: TradingSession, *, position_id: int, pnl: Decimal, exit_fee: Decimal,
    released_cost: Decimal, exit_reason: str = "strategy_exit", now: datetime | None = None,
) -> AccountBalance:
    """As :meth:`Batch.position_closed`, through the ORM (the caller has closed the position)."""
    row = None
    for kwargs in _position_closed(position_id, pnl, exit_fee, released_cost, exit_reason):
        row = post(db, session, **kwargs, now=now)
    assert row is not None
    return row


def entry_by_reference(db: Session, session_id: int, reference: str) -> AccountBalance | None:
    return db.execute(
        select(AccountBalance).where(
            AccountBalance.session_id == session_id, AccountBalance.reference == reference
        ).limit(1)
    ).scalar_one_or_none()
