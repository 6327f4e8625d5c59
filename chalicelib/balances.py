"""Use cases around a session's balance, shared by the CLI and the HTTP API.

Each write use case frames exactly one transaction (``write_transaction``), takes the session lock through the
ledger, and commits; each read runs in one snapshot. Callers translate the domain errors raised here into exit
codes or HTTP statuses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Engine, Select, and_, bindparam, func, literal, literal_column, select, true
from sqlalchemy.orm import Session, aliased

from chalicelib import accounting, ledger, valuation
from chalicelib.db.models import AccountBalance, Position, TickLog, TradingSession
from chalicelib.db.pages import keyset_page
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import CAPITAL_FLOW_KINDS, Actor, Kind, LedgerError, open_positions
from chalicelib.money import ZERO
from chalicelib.trading.candles import timeframe_to_timedelta
from chalicelib.valuation import AssetLine, ExposureLine, Mark

ChangeOp = Literal["set", "deposit", "withdraw"]


class AmbiguousSession(LedgerError):
    """Several sessions are active and none was named."""

    code = "session_ambiguous"

    def __init__(self, choices: list[TradingSession]) -> None:
        self.choices = [
            {"session_id": s.id, "strategy": s.strategy, "symbol": s.symbol, "timeframe": s.timeframe,
             "mode": s.mode}
            for s in choices
        ]
        listed = ", ".join(f"#{c['session_id']} {c['strategy']} {c['symbol']} {c['timeframe']}"
                           for c in self.choices)
        super().__init__(f"several sessions are active ({listed}); pick one with session_id")


class NoActiveSession(LedgerError):
    code = "no_active_session"


def select_session(db: Session, session_id: int | None = None) -> TradingSession:
    """The named session, or the only active one."""
    return select_account(db, session_id, positions=False)[0]


def select_account(db: Session, session_id: int | None = None, *,
                   positions: bool = True) -> tuple[TradingSession, list[Position]]:
    """The named session, or the only active one, with its open positions (oldest first) read in the same
    statement (the session LEFT JOIN its open positions). Without ``positions`` the list is empty."""
    if session_id is not None and not positions:
        session = db.get(TradingSession, session_id)
        if session is None:
            raise ledger.SessionNotFound(f"no trading session #{session_id}")
        return session, []
    if session_id is not None:
        rows = db.execute(_account_statement(positions=positions, named=True), {"sid": session_id}).all()
        if not rows:
            raise ledger.SessionNotFound(f"no trading session #{session_id}")
        return rows[0][0], _held(rows)
    rows = db.execute(_account_statement(positions=positions, named=False)).all()
    active = list(dict.fromkeys(row[0] for row in rows))
    if not active:
        accounts = list(db.execute(select(TradingSession).order_by(TradingSession.id).limit(2)).scalars())
        if len(accounts) == 1:  # the one account there is, stopped: still readable without naming it
            return accounts[0], open_positions(db, accounts[0].id) if positions else []
        raise NoActiveSession("no active trading session; start one with `atb sessions start` or `atb live`")
    if len(active) > 1:
        raise AmbiguousSession(active)
    return active[0], _held(rows)


@functools.lru_cache(maxsize=8)
def _account_statement(*, positions: bool, named: bool) -> Select[Any]:
    """``select_account``'s statement: the session named by ``:sid`` (else the active ones), LEFT JOIN its open
    positions when ``positions``. Built once per shape, so SQLAlchemy builds, keys and compiles it once."""
    entities: list[Any] = [TradingSession, Position] if positions else [TradingSession]
    stmt = select(*entities)
    if positions:
        stmt = stmt.outerjoin(
            Position, and_(Position.session_id == TradingSession.id, Position.status == "open"))
    if named:
        return stmt.where(TradingSession.id == bindparam("sid")).order_by(*_position_order(positions))
    return stmt.where(TradingSession.status == "active").order_by(TradingSession.id, *_position_order(positions))


def _position_order(positions: bool) -> list[Any]:
    return [Position.id] if positions else []


def _held(rows: Any) -> list[Position]:
    return [row[1] for row in rows if len(row) > 1 and row[1] is not None]


@dataclass(frozen=True)
class ChangeResult:
    session: TradingSession
    entry: AccountBalance
    replayed: bool  # True when an idempotency key matched an earlier request: nothing was changed now
    #: False when the idempotency key was used before for a different change (nothing was changed now either).
    matches_request: bool = True


_KIND_OF: dict[ChangeOp, Kind] = {"set": Kind.MANUAL_SET, "deposit": Kind.DEPOSIT, "withdraw": Kind.WITHDRAWAL}


def _same_change(entry: AccountBalance, op: ChangeOp, amount: Decimal, reason: str) -> bool:
    """Whether an earlier row recorded this very change (same operation, amount and reason)."""
    same_amount = (entry.total_balance == amount if op == "set"
                   else entry.delta == (amount if op == "deposit" else -amount))
    return entry.kind == _KIND_OF[op] and same_amount and entry.update_reason == reason.strip()


def change_balance(
    op: ChangeOp,
    amount: Decimal,
    *,
    reason: str,
    actor: Actor,
    session_id: int | None = None,
    idempotency_key: str | None = None,
    engine: Engine,
    now: datetime | None = None,
) -> ChangeResult:
    """A manual capital change (set / deposit / withdraw) in one transaction under the session lock.

    With an idempotency key, a retry of the same request returns the first result and changes nothing; the key is
    scoped to the actor that sent it (``request:{actor name}:{key}``), so another actor reusing the same key makes
    its own change instead of receiving someone else's. A key reused for a different change changes nothing and
    says so (``matches_request`` False).
    """
    with write_transaction(engine) as db:
        sid = session_id if session_id is not None else select_session(db).id
        scoped = f"{actor.name}:{idempotency_key}" if idempotency_key else None
        reference = ledger.request_reference(scoped) if scoped else None
        # One statement: the session locked, its open positions, and any row this request already wrote.
        locked = ledger.lock(db, sid, reference=reference)
        assert locked is not None
        session = locked.session
        if locked.earlier is not None:
            earlier = db.get(AccountBalance, locked.earlier)
            assert earlier is not None
            return ChangeResult(session, earlier, replayed=True,
                                matches_request=_same_change(earlier, op, amount, reason))
        if session.status != "active":
            raise ledger.InvalidChange(f"session #{session.id} has ended; its balance can no longer change")
        record = {"set": ledger.record_manual_set, "deposit": ledger.record_deposit,
                  "withdraw": ledger.record_withdrawal}.get(op)
        if record is None:  # pragma: no cover - typed away
            raise ledger.InvalidChange(f"unknown operation {op!r}")
        entry = record(db, session, amount, reason=reason, actor=actor, reference=reference, now=now,
                       positions=locked.positions)
        return ChangeResult(session, entry, replayed=False)


@dataclass(frozen=True)
class AccountPoint:
    """The account at one moment of market time: equity and its units (``chalicelib.accounting``)."""

    market_time: datetime
    equity: Decimal
    units: Decimal
    unit_value: Decimal
    performance_index: Decimal


@dataclass(frozen=True)
class WindowTotals:
    """What the ledger rows of a window add up to, by what they were."""

    net_flows: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO


@dataclass(frozen=True)
class Wallet:
    """The account's assets now: its pairs (in the bot's order) with their marks, the asset breakdown (cash first)
    and the exposure (per asset, then ``total``), all from ``chalicelib.valuation`` over the session's marks and its
    open positions — no database work of its own."""

    symbols: tuple[str, ...]
    marks: dict[str, Mark]
    assets: list[AssetLine]
    exposure: list[ExposureLine]


def wallet_of(session: TradingSession, positions: list[Position]) -> Wallet:
    """``session``'s wallet, its open ``positions`` each valued at its own pair's mark."""
    symbols = session.symbols
    marks = dict(session.marks)
    items = ledger.holdings(positions, marks)
    cash = session.available_balance
    return Wallet(symbols, marks, valuation.breakdown(cash, items, marks, symbols),
                  valuation.exposure(cash, items))


@dataclass(frozen=True)
class BalanceSummary:
    """The account now, 24 market hours ago, and what happened in between, read in one snapshot.

    Performance (``change_24h_percent``, ``drawdown``, ``time_weighted_return``) is measured on the value per unit,
    so deposits, withdrawals and manual sets never move it; the plain change in equity is split into net capital
    flows and P&L."""

    session: TradingSession
    latest: AccountBalance | None
    recent: list[AccountBalance]
    now: AccountPoint
    start: AccountPoint
    window: WindowTotals
    unrealized_pnl: Decimal
    wallet: Wallet

    @property
    def balance_24h_ago(self) -> Decimal:
        return self.start.equity

    @property
    def change_24h_fraction(self) -> Decimal | None:
        return accounting.time_weighted_return(self.start.performance_index, self.now.performance_index)

    @property
    def change_24h_percent(self) -> Decimal | None:
        """24 h performance in percent, excluding capital flows (the time-weighted return over the window)."""
        return accounting.percent(self.change_24h_fraction)

    @property
    def balance_delta_24h(self) -> Decimal:
        return self.now.equity - self.start.equity

    @property
    def pnl_24h(self) -> Decimal:
        """Realised and unrealised trading result over the window: the plain change less the net flows."""
        return self.balance_delta_24h - self.window.net_flows

    @property
    def drawdown(self) -> Decimal:
        return accounting.drawdown(self.session.unit_value, self.session.peak_unit_value)

    @property
    def time_weighted_return(self) -> Decimal | None:
        """Since the account began (its performance index started at 1)."""
        return accounting.time_weighted_return(accounting.ONE, self.now.performance_index)

    @property
    def total_pnl(self) -> Decimal:
        """Money-weighted: equity less the capital put in (initial capital and net flows since the last reset)."""
        return self.now.equity - self.session.net_contributions


def _point(market_time: Any, equity: Any, units: Any, unit_value: Any, index: Any) -> AccountPoint:
    return AccountPoint(market_time, equity, units, unit_value, index)


#: The ledger kinds a window's totals add up, and which of them are capital flows (a reset counts as one).
_FLOW_KINDS = tuple(sorted((*CAPITAL_FLOW_KINDS, Kind.RESET)))
_WINDOW_KINDS = (*_FLOW_KINDS, Kind.TRADE_PNL, Kind.FEE)


def _totals(sums: dict[str, Decimal]) -> WindowTotals:
    """A window's totals from its per-kind sums (kinds without rows absent)."""
    flows = sum((sums.get(k, ZERO) for k in _FLOW_KINDS), ZERO)
    return WindowTotals(net_flows=flows, realized_pnl=sums.get(Kind.TRADE_PNL, ZERO), fees=-sums.get(Kind.FEE, ZERO))


def _summed(per_kind: Any) -> WindowTotals:
    """``_totals`` of the database's per-kind sums, in ``_WINDOW_KINDS`` order (None: no row of that kind)."""
    return _totals({k: Decimal(v) for k, v in zip(_WINDOW_KINDS, per_kind, strict=True) if v is not None})


def window_totals(db: Session, session_id: int, *, after: datetime | None = None,
                  after_id: int | None = None) -> WindowTotals:
    """Net capital flows, realised P&L and fees of the rows after market time ``after`` (or after ledger row
    ``after_id``), summed in Python (exact on SQLite's decimal text). On PostgreSQL ``summarize`` has the database
    sum them (NUMERIC) inside its one statement."""
    where = [AccountBalance.session_id == session_id, AccountBalance.kind.in_(_WINDOW_KINDS)]
    if after is not None:
        where.append(AccountBalance.market_time > after)
    if after_id is not None:
        where.append(AccountBalance.id > after_id)
    sums: dict[str, Decimal] = {}
    for kind, delta in db.execute(select(AccountBalance.kind, AccountBalance.delta).where(*where)).all():
        sums[kind] = sums.get(kind, ZERO) + delta
    return _totals(sums)


@functools.lru_cache(maxsize=16)
def _summary_statement(recent: int, *, sums: bool) -> Select[Any]:
    """Everything ``summarize`` reads besides the session and its positions, as one statement: one row per recent
    ledger row (newest first; one all-null row when there are none), each carrying

    * ``point``: the last ledger row at or before market time ``:since`` (by market time, then id);
    * ``tick``: the last tick row whose candle closed by ``:since`` (began by ``:tick_before``) and that recorded
      equity;
    * ``first``: the account's first ledger row;
    * with ``sums`` (PostgreSQL, exact NUMERIC): per kind, the sum of the deltas after ``since`` (``s_<kind>``) and
      after the first row (``f_<kind>``, meaningful only when there is no point: then every row is after
      ``since``).

    The parts do not depend on each other, so they are joined to a one-row table ``ON true``; each reads the ledger
    through ``(session_id, market_time)`` or ``(session_id, id)``. Built once per shape with bound parameters
    (``:sid``, ``:since``, ``:tick_before``): SQLAlchemy compiles it once and the connection prepares it once."""
    ab = AccountBalance
    sid: Any = bindparam("sid")
    since: Any = bindparam("since")
    point = (
        select(ab.market_time, ab.equity, ab.units, ab.unit_value, ab.performance_index, ab.last_updated)
        .where(ab.session_id == sid, ab.market_time <= since)
        .order_by(ab.market_time.desc(), ab.id.desc())
        .limit(1)
        .subquery("point")
    )
    tick = (
        select(TickLog.market_time, TickLog.equity, TickLog.units, TickLog.unit_value, TickLog.performance_index,
               TickLog.processed_at)
        .where(TickLog.session_id == sid, TickLog.candle_time <= bindparam("tick_before"), TickLog.equity.is_not(None))
        .order_by(TickLog.candle_time.desc())
        .limit(1)
        .subquery("tick")
    )
    first = (
        select(ab.market_time, ab.equity, ab.units, ab.unit_value, ab.performance_index, ab.id)
        .where(ab.session_id == sid)
        .order_by(ab.id)
        .limit(1)
        .subquery("first")
    )
    rows = select(ab).where(ab.session_id == sid).order_by(ab.id.desc()).limit(max(recent, 1)).subquery("recent")
    latest = aliased(AccountBalance, rows)
    one = select(literal_column("1").label("one")).subquery("one")
    columns: list[Any] = [latest, *point.c, *tick.c, *first.c]
    stmt = select(*columns)
    if sums:
        first_id = select(func.min(ab.id)).where(ab.session_id == sid).scalar_subquery()
        totals = (
            select(*(func.sum(ab.delta).filter(ab.kind == k).label(f"s_{k}") for k in _WINDOW_KINDS),
                   *(func.sum(ab.delta).filter(ab.kind == k, ab.id > first_id).label(f"f_{k}") for k in _WINDOW_KINDS))
            # IN over one bound value per kind, rendered once: a plain in_() of a list is an "expanding" parameter
            # that SQLAlchemy renders into the SQL text again on every execution (≈ 0.1 ms of regex per summary).
            .where(ab.session_id == sid, ab.kind.in_([literal(k) for k in _WINDOW_KINDS]), ab.market_time > since)
            .subquery("totals")
        )
        stmt = stmt.add_columns(*totals.c)
    stmt = stmt.select_from(one).outerjoin(point, true()).outerjoin(tick, true()).outerjoin(first, true())
    if sums:
        stmt = stmt.outerjoin(totals, true())
    return stmt.outerjoin(rows, true()).order_by(latest.id.desc())


def summarize(db: Session, session: TradingSession, *, positions: list[Position] | None = None,
              recent: int = 5) -> BalanceSummary:
    """The account now and over the last 24 market hours (the window ends at the newest applied candle's close).

    The account 24 h ago is, of the last ledger row and the last tick row at or before that moment, the later by
    (market time, recorded time): a tick row marks open positions at its candle's close; a manual change at that
    close was recorded after the tick, so it wins; a tick's own rows tie with it and hold the same figures. An
    account younger than 24 hours compares with its first ledger row (the starting capital), so the figures read
    "since start".

    One statement besides the session (``_summary_statement``); ``positions`` when the caller read them with the
    session (``select_account``), otherwise one more.
    """
    if positions is None:
        positions = open_positions(db, session.id)
    state = ledger.unit_state(session)
    moment = session.market_time or utcnow()  # the last applied close; the wall clock before any candle
    now = AccountPoint(moment, ledger.equity_of(session, positions), state.units, state.unit_value,
                       state.performance_index)
    unrealized = accounting.unrealized_pnl(ledger.marked_value(positions, session.marks),
                                           session.reserved_balance)
    since = moment - timedelta(hours=24)
    in_database = db.get_bind().dialect.name == "postgresql"
    tick_before = since - timeframe_to_timedelta(session.timeframe)
    result = db.execute(_summary_statement(recent, sums=in_database),
                        {"sid": session.id, "since": since, "tick_before": tick_before}).all()
    recent_rows = [r[0] for r in result if r[0] is not None]
    head = result[0]
    row, tick, first = head[1:7], head[7:13], head[13:19]
    start: AccountPoint | None = None
    if tick[1] is not None and (row[0] is None or (tick[0], tick[5]) > (row[0], row[5])):
        start = _point(*tick[:5])  # non-null since 0003 (equity is not null)
    elif row[0] is not None:
        start = _point(*row[:5])
    n = len(_WINDOW_KINDS)
    after_since, after_first = head[19:19 + n], head[19 + n:19 + 2 * n]  # empty on SQLite
    if start is not None:
        totals = _summed(after_since) if in_database else window_totals(db, session.id, after=since)
    elif first[5] is not None:
        start = _point(*first[:5])
        totals = _summed(after_first) if in_database else window_totals(db, session.id, after_id=first[5])
    else:
        start, totals = now, WindowTotals()
    return BalanceSummary(session=session, latest=recent_rows[0] if recent_rows else None,
                          recent=recent_rows[:recent], now=now, start=start, window=totals,
                          unrealized_pnl=unrealized, wallet=wallet_of(session, positions))


def history_page(
    db: Session, session_id: int, *, limit: int = 50, before: int | None = None
) -> tuple[list[AccountBalance], int | None]:
    """Newest first, keyset-paginated by ledger id; returns the page and the cursor for the next one."""
    if not 1 <= limit <= ledger.MAX_PAGE:
        raise ledger.InvalidChange(f"limit must be between 1 and {ledger.MAX_PAGE}")
    return keyset_page(db, select(AccountBalance).where(AccountBalance.session_id == session_id), AccountBalance.id,
                       limit=limit, before=before)


def read_summary(session_id: int | None = None, *, engine: Engine) -> BalanceSummary:
    """The account summary in one snapshot: BEGIN, the session with its positions, the rest, ROLLBACK."""
    with read_transaction(engine) as db:
        session, positions = select_account(db, session_id)
        return summarize(db, session, positions=positions)


@dataclass(frozen=True)
class ExposurePoint:
    """The wallet after the candles of one market time: its equity and gross exposure (the tick log's figures)."""

    market_time: datetime
    candle_time: datetime
    equity: Decimal
    exposure: Decimal


@dataclass(frozen=True)
class ExposureReport:
    """The exposure now and its history (newest first), read in one snapshot."""

    session: TradingSession
    equity: Decimal
    wallet: Wallet
    history: list[ExposurePoint]
    next_before: datetime | None  # the candle time to pass for the next (older) page; None at the end


def exposure_history(db: Session, session_id: int, *, limit: int,
                     before: datetime | None = None) -> tuple[list[ExposurePoint], datetime | None]:
    """The newest ``limit`` market times (candle open time before ``before``) at which the account recorded its
    exposure, newest first. Several pairs write one tick row each per candle time: the last one written (highest
    id) is the wallet after all of them. Returns the points and the candle time to pass as ``before`` for the next
    page (None when there is none)."""
    if not 1 <= limit <= ledger.MAX_PAGE:
        raise ledger.InvalidChange(f"limit must be between 1 and {ledger.MAX_PAGE}")
    where = [TickLog.session_id == session_id, TickLog.exposure.is_not(None), TickLog.equity.is_not(None),
             TickLog.market_time.is_not(None)]
    if before is not None:
        where.append(TickLog.candle_time < before)
    last = (select(func.max(TickLog.id)).where(*where).group_by(TickLog.candle_time)
            .order_by(TickLog.candle_time.desc()).limit(limit + 1))
    rows = db.execute(select(TickLog.market_time, TickLog.candle_time, TickLog.equity, TickLog.exposure)
                      .where(TickLog.id.in_(last.scalar_subquery())).order_by(TickLog.candle_time.desc())).all()
    points = [ExposurePoint(market_time, candle_time, equity, exposure)  # all four non-null (the filter above)
              for market_time, candle_time, equity, exposure in rows[:limit]
              if market_time is not None and equity is not None and exposure is not None]
    return points, (points[-1].candle_time if len(rows) > limit else None)


def read_exposure(session_id: int | None = None, *, limit: int = ledger.DEFAULT_PAGE, before: datetime | None = None,
                  engine: Engine) -> ExposureReport:
    """The exposure now (the session's marks and open positions, as ``GET /api/balance`` values them) and a page of
    its history, in one snapshot: BEGIN, the session with its positions, the history, ROLLBACK."""
    with read_transaction(engine) as db:
        session, positions = select_account(db, session_id)
        history, next_before = exposure_history(db, session.id, limit=limit, before=before)
        return ExposureReport(session=session, equity=ledger.equity_of(session, positions),
                              wallet=wallet_of(session, positions), history=history, next_before=next_before)
