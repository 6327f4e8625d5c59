"""The ledger's store: the only code that writes a session's money, through one path (:class:`Batch`).

Every change is one append-only ``account_balances`` row (delta, balance after, kind, reason, who, reference,
units, market time) written in the same transaction as the session's cached balance. Each writer first takes the
session row lock (:func:`lock`: ``SELECT … FOR UPDATE`` on Postgres; SQLite write transactions hold the database
lock from ``BEGIN IMMEDIATE``), then reads the balance, so two writers in any interleaving give the result of one
after the other. The rules a change must pass are ``chalicelib.ledger.rules``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Insert, Select, Table, Update, and_, bindparam, insert, select, update
from sqlalchemy.orm import Session, aliased, configure_mappers
from sqlalchemy.orm.attributes import set_committed_value

from chalicelib import accounting
from chalicelib.db.models import AccountBalance, Position, TickLog, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.ledger.rules import (
    SYSTEM,
    Actor,
    InvalidChange,
    SessionNotFound,
    check,
    held_quantities,
    marked_value,
    position_closed,
    position_opened,
    unit_state,
)
from chalicelib.ledger.vocabulary import EVENT_KINDS
from chalicelib.money import ZERO
from chalicelib.valuation import Mark


@dataclass(frozen=True)
class Locked:
    """A locked session with its open positions (oldest first) and, when a reference was asked for, the id of
    the ledger row that already carries it."""

    session: TradingSession
    positions: list[Position]
    earlier: int | None = None


#: The session row as a statement saw it when it started (``lock``); made once (an alias per call costs ≈ 0.3 ms).
_STARTED = aliased(TradingSession)


@functools.lru_cache(maxsize=8)
def _lock_statement(*, reference: bool, locking: bool, skip_locked: bool) -> Select[Any]:
    """``lock``'s read (the session LEFT JOIN its open positions, the session's version as the statement started,
    with ``reference`` the id of a ledger row carrying ``:reference``), ``FOR UPDATE OF`` the session when
    ``locking``. Built once per shape with bound parameters (``:sid``, ``:reference``), so SQLAlchemy builds,
    keys and compiles it once and the connection prepares it once: building it per call cost ≈ 0.2 ms of Python
    on every balance change."""
    sid: Any = bindparam("sid")
    version_at_start = select(_STARTED.version).where(_STARTED.id == sid).scalar_subquery()
    columns: list[Any] = [TradingSession, Position, version_at_start]
    if reference:
        columns.append(select(AccountBalance.id)
                       .where(AccountBalance.session_id == TradingSession.id,
                              AccountBalance.reference == bindparam("reference"))
                       .limit(1)
                       .scalar_subquery())
    read = (
        select(*columns)
        .outerjoin(Position, and_(Position.session_id == TradingSession.id, Position.status == "open"))
        .where(TradingSession.id == sid)
        .order_by(Position.id)
        .execution_options(populate_existing=True)
    )
    return read.with_for_update(of=TradingSession, skip_locked=skip_locked) if locking else read


# Every shape is built here, once, while the module is imported (imports are serialised): built lazily, the first
# builds ran in several request threads at once and SQLAlchemy's first look-up of ``_STARTED.version`` could fail
# ("Did not locate an expression in selectable for attribute 'version'"), caching a statement whose "version as it
# started" was the locked row's own — a writer that had waited then missed the other's rows (a duplicate idempotency
# key, a position not seen: a CI run's test_api_concurrency_pg built it first from its threads, warned, and it and
# test_lock_after_waiting, in the same worker, then failed). test_lock_after_waiting checks every shape's SQL.
configure_mappers()
for _reference, _locking, _skip in itertools.product((False, True), repeat=3):
    _lock_statement(reference=_reference, locking=_locking, skip_locked=_skip)


def lock(db: Session, session_id: int, *, skip_locked: bool = False, reference: str | None = None) -> Locked | None:
    """Lock and load a session row with its open positions (the session LEFT JOIN its open positions, ``FOR UPDATE
    OF`` the session) and look ``reference`` up — in one statement when nobody changed the account meanwhile.

    Under READ COMMITTED a statement that waited for the lock sees the locked row as the other writer left it but
    the joined positions and the reference lookup as they were when it started. Every change of positions or
    ledger rows bumps the session's ``version``, so the statement also reads the version as it started; when the
    two differ the positions and the reference are read again, after the lock (a fresh snapshot). With
    ``skip_locked`` returns None when another transaction holds the lock; otherwise a missing session raises."""
    shape = reference is not None
    params: dict[str, Any] = {"sid": session_id, "reference": reference} if shape else {"sid": session_id}
    rows = db.execute(_lock_statement(reference=shape, locking=True, skip_locked=skip_locked), params).all()
    if not rows:
        if skip_locked:
            return None
        raise SessionNotFound(f"no trading session #{session_id}")
    if rows[0][0].version != rows[0][2]:  # waited for another writer: the same read again, under the lock
        rows = db.execute(_lock_statement(reference=shape, locking=False, skip_locked=False), params).all()
    positions = [row[1] for row in rows if row[1] is not None]
    return Locked(rows[0][0], positions, rows[0][3] if shape else None)


def lock_session(db: Session, session_id: int) -> TradingSession:
    """Lock and load a session row (waiting for the lock); a missing session raises ``SessionNotFound``."""
    locked = lock(db, session_id)
    assert locked is not None  # only skip_locked returns None
    return locked.session


def open_positions(db: Session, session_id: int) -> list[Position]:
    """A session's open positions, oldest first."""
    stmt = select(Position).where(Position.session_id == session_id, Position.status == "open").order_by(Position.id)
    return list(db.execute(stmt).scalars())


_LEDGER_TABLE = cast(Table, AccountBalance.__table__)
_SESSION_TABLE = cast(Table, TradingSession.__table__)
_TICK_LOG_TABLE = cast(Table, TickLog.__table__)
_LEDGER_CLASS = AccountBalance.__mapper__.class_manager
_TICK_INSERT = insert(_TICK_LOG_TABLE).returning(_TICK_LOG_TABLE.c.id)


@functools.lru_cache(maxsize=64)
def _account_update(columns: tuple[str, ...]) -> Update:
    """``UPDATE trading_sessions SET <columns> WHERE id = :account_id``, built once per column set (bound
    parameters, so SQLAlchemy compiles it once and the connection prepares it once)."""
    return (update(_SESSION_TABLE).where(_SESSION_TABLE.c.id == bindparam("account_id"))
            .values({key: bindparam(f"set_{key}") for key in columns}))


@functools.lru_cache(maxsize=64)
def _ledger_insert(columns: tuple[str, ...], count: int, account_columns: tuple[str, ...]) -> Insert:
    """PostgreSQL: ``count`` ledger rows and the session's update as one statement (``WITH account AS (UPDATE …
    RETURNING id) INSERT INTO account_balances … VALUES (…), … RETURNING id``), built once per shape."""
    account = _account_update(account_columns).returning(_SESSION_TABLE.c.id).cte("account")
    rows: list[dict[str, Any]] = [{key: bindparam(f"{key}_{i}") for key in columns} for i in range(count)]
    # One row as a plain VALUES: SQLAlchemy caches its compiled form (a multi-row VALUES it compiles each time).
    return insert(_LEDGER_TABLE).values(rows[0] if count == 1 else rows).returning(_LEDGER_TABLE.c.id).add_cte(account)


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
    positions: Sequence[Position] | None = None,
    now: datetime | None = None,
    market_time: datetime | None = None,
) -> AccountBalance:
    """Append one ledger row and update the session's cached balance: a batch of one (:class:`Batch`, the one
    write path). The caller holds the session lock.

    Without ``held`` and ``positions_value`` both are taken from the open positions after the change
    (``positions``, else read), valued at the session's last close.
    """
    batch = Batch(db, session, positions)
    batch.post(kind=kind, delta=delta, reason=reason, actor=actor, reserved_delta=reserved_delta,
               reference=reference, held=held, positions_value=positions_value, now=now or utcnow(),
               market_time=market_time)
    [row] = batch.write()
    return row


class Batch:
    """The ledger's one write path. Every change is checked and computed at once, under the session lock, and
    :meth:`write` then sends the tick rows (one INSERT), then the ledger rows with the session's new balance and
    cursor — on PostgreSQL one statement (a data-modifying CTE: UPDATE the session, INSERT the rows), on SQLite one
    statement each. The caller holds the session lock and must call :meth:`write` before its
    transaction commits; :func:`post` is a batch of one.

    The session object shows each new balance at once (set without ORM change tracking, so the ORM never writes
    it a second time); nothing reaches the database until :meth:`write`.
    """

    _COLUMNS = ("total_balance", "available_balance", "reserved_balance", "units", "unit_value", "peak_unit_value",
                "series_base", "net_contributions", "version", "marks", "market_time")

    def __init__(self, db: Session, session: TradingSession, positions: Sequence[Position] | None = None) -> None:
        self.db = db
        self.session = session
        self.positions = positions
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}

    def _cache(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            set_committed_value(self.session, key, value)

    def post(self, *, kind: str, delta: Decimal, reason: str, now: datetime,
             held: Mapping[str, Decimal] | None = None, positions_value: Decimal | None = None,
             market_time: datetime | None = None, actor: Actor = SYSTEM, reserved_delta: Decimal = ZERO,
             reference: str | None = None) -> None:
        if held is None or positions_value is None:
            positions = self.positions if self.positions is not None else open_positions(self.db, self.session.id)
            held = held_quantities(list(positions)) if held is None else held
            if positions_value is None:
                positions_value = marked_value(positions, self.session.marks)
        posting = check(self.session, kind=kind, delta=delta, reason=reason, actor=actor,
                         reserved_delta=reserved_delta, reference=reference, held=held, when=now,
                         positions_value=positions_value, market_time=market_time)
        self.rows.append(posting.row)
        self._cache(posting.session)

    def position_opened(self, *, cost: Decimal, fee: Decimal, reference: str, now: datetime,
                        held: Mapping[str, Decimal] | None = None, positions_value: Decimal | None = None,
                        market_time: datetime | None = None) -> None:
        """Reserve a new position's cost and charge its entry fee (one ``fee`` row)."""
        self.post(**position_opened(cost, fee), reference=reference, held=held, positions_value=positions_value,
                  now=now, market_time=market_time)

    def position_closed(self, *, position_id: int, pnl: Decimal, exit_fee: Decimal, released_cost: Decimal,
                        exit_reason: str, now: datetime, held: Mapping[str, Decimal] | None = None,
                        positions_value: Decimal | None = None, market_time: datetime | None = None) -> None:
        """A position sold: its cost released with the exit fee charged (one ``fee`` row), then its gross
        realised P&L (one ``trade_pnl`` row, last, so the account's last reason reads ``trade_pnl_<exit>``)."""
        for kwargs in position_closed(position_id, pnl, exit_fee, released_cost, exit_reason):
            self.post(**kwargs, held=held, positions_value=positions_value, now=now, market_time=market_time)

    def mark(self, *, marks: Mapping[str, Mark], equity: Decimal, market_time: datetime) -> None:
        """A candle closed: its pair's positions are marked at its close (``marks``, every pair's), which moves the
        value per unit (and the peak) without a ledger row. The account's market time is the newest candle's close
        (a late pair's candle, caught up after the others, does not move it back)."""
        state = accounting.after_trading(unit_state(self.session), equity)
        newest = market_time if self.session.market_time is None else max(self.session.market_time, market_time)
        self._cache({"unit_value": state.unit_value, "peak_unit_value": state.peak_unit_value, "marks": dict(marks),
                     "market_time": newest})

    def set(self, **columns: Any) -> None:
        """Other session columns (the tick's cursor) to write with the balance, in the same UPDATE."""
        for key, value in columns.items():
            self.extra[key] = value
            set_committed_value(self.session, key, value)

    def write(self, tick_rows: Sequence[Mapping[str, Any]] = ()) -> list[AccountBalance]:
        """Send the ledger rows, the session's new columns and ``tick_rows`` (``tick_log``), after any pending ORM
        changes (positions, trades). Returns the ledger rows written, with their ids."""
        db, s = self.db, self.session
        db.flush()
        conn = db.connection()
        values = {key: getattr(s, key) for key in self._COLUMNS}
        values.update(self.extra)
        rows, self.rows = self.rows, []
        ids: list[int] = []
        if tick_rows:  # first, so that a tick's last statement is the one that moves its money
            # One row (a tick of one candle) as a single execute: a list of rows goes through SQLAlchemy's
            # "insertmanyvalues", which renders the statement again on every call.
            conn.execute(_TICK_INSERT, dict(tick_rows[0]) if len(tick_rows) == 1 else list(tick_rows))
        account = _account_update(tuple(values))
        params = {f"set_{key}": value for key, value in values.items()}
        params["account_id"] = s.id
        if conn.dialect.name == "postgresql" and rows:
            for i, row in enumerate(rows):
                params.update({f"{key}_{i}": value for key, value in row.items()})
            ids = list(conn.execute(_ledger_insert(tuple(rows[0]), len(rows), tuple(values)), params).scalars())
        else:
            if rows:
                ids = list(conn.execute(insert(_LEDGER_TABLE).returning(_LEDGER_TABLE.c.id), rows).scalars())
            # RETURNING: the row count SQLAlchemy checks comes back as a row (one prepared round trip on PostgreSQL).
            conn.execute(account.returning(_SESSION_TABLE.c.id), params)
        if not ids:
            return []
        # The rows as written, set as a load sets them (committed state, no change history): the instrumented
        # constructor records a change for each of the 19 attributes, ≈ 17 µs a row for history nobody reads.
        written_rows = []
        for row, row_id in zip(rows, ids, strict=True):
            entry = _LEDGER_CLASS.new_instance()
            entry.__dict__.update(row, id=row_id)
            written_rows.append(entry)
        return written_rows


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
        marks={},
    )
    db.add(session)
    db.flush()
    post(db, session, kind="initial", delta=initial_balance, reason=reason, actor=actor, held={},
         positions_value=ZERO, now=when, market_time=market_time or when)
    return session


def record_manual_set(
    db: Session, session: TradingSession, new_total: Decimal, *, reason: str, actor: Actor,
    reference: str | None = None, now: datetime | None = None,
    positions: Sequence[Position] | None = None,
) -> AccountBalance:
    """Set the total balance to an absolute amount; the row records the difference (a capital flow)."""
    if new_total < 0:
        raise InvalidChange("balance must not be negative")
    return post(db, session, kind="manual_set", delta=new_total - session.total_balance, reason=reason,
                actor=actor, reference=reference, now=now, positions=positions)


def record_deposit(
    db: Session, session: TradingSession, amount: Decimal, *, reason: str, actor: Actor,
    reference: str | None = None, now: datetime | None = None,
    positions: Sequence[Position] | None = None,
) -> AccountBalance:
    if amount <= 0:
        raise InvalidChange("a deposit must be greater than zero")
    return post(db, session, kind="deposit", delta=amount, reason=reason, actor=actor, reference=reference,
                now=now, positions=positions)


def record_withdrawal(
    db: Session, session: TradingSession, amount: Decimal, *, reason: str, actor: Actor,
    reference: str | None = None, now: datetime | None = None,
    positions: Sequence[Position] | None = None,
) -> AccountBalance:
    if amount <= 0:
        raise InvalidChange("a withdrawal must be greater than zero")
    return post(db, session, kind="withdrawal", delta=-amount, reason=reason, actor=actor,
                reference=reference, now=now, positions=positions)


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


