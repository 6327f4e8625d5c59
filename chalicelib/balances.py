"""Use cases around a session's balance, shared by the CLI and the HTTP API.

Each write use case frames exactly one transaction (``write_transaction``), takes the session lock through the
ledger, and commits; each read runs in one snapshot. Callers translate the domain errors raised here into exit
codes or HTTP statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from chalicelib import accounting, ledger
from chalicelib.db.models import AccountBalance, TickLog, TradingSession
from chalicelib.db.pages import keyset_page
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import CAPITAL_FLOW_KINDS, Actor, Kind, LedgerError, open_positions
from chalicelib.money import ZERO
from chalicelib.trading.candles import timeframe_to_timedelta

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
    if session_id is not None:
        session = db.get(TradingSession, session_id)
        if session is None:
            raise ledger.SessionNotFound(f"no trading session #{session_id}")
        return session
    active = list(
        db.execute(
            select(TradingSession).where(TradingSession.status == "active").order_by(TradingSession.id)
        ).scalars()
    )
    if not active:
        accounts = list(db.execute(select(TradingSession).order_by(TradingSession.id).limit(2)).scalars())
        if len(accounts) == 1:
            return accounts[0]  # the one account there is, stopped: still readable without naming it
        raise NoActiveSession("no active trading session; start one with `atb sessions start` or `atb live`")
    if len(active) > 1:
        raise AmbiguousSession(active)
    return active[0]


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


def point_at(db: Session, session: TradingSession, moment: datetime) -> AccountPoint | None:
    """The account as it stood at market time ``moment``: of the last ledger row and the last tick row at or before
    it, the later by (market time, recorded time). A tick row marks open positions at its candle's close; a manual
    change at that close was recorded after the tick, so it wins; a tick's own rows tie with it and hold the same
    figures."""
    row = db.execute(
        select(AccountBalance.market_time, AccountBalance.equity, AccountBalance.units, AccountBalance.unit_value,
               AccountBalance.performance_index, AccountBalance.last_updated)
        .where(AccountBalance.session_id == session.id, AccountBalance.market_time <= moment)
        .order_by(AccountBalance.market_time.desc(), AccountBalance.id.desc())
        .limit(1)
    ).first()
    step = timeframe_to_timedelta(session.timeframe)
    tick = db.execute(
        select(TickLog.market_time, TickLog.equity, TickLog.units, TickLog.unit_value, TickLog.performance_index,
               TickLog.processed_at)
        .where(TickLog.session_id == session.id, TickLog.candle_time <= moment - step, TickLog.equity.is_not(None))
        .order_by(TickLog.candle_time.desc())
        .limit(1)
    ).first()
    if tick is not None and (row is None or (tick[0], tick[5]) > (row[0], row[5])):
        return _point(tick[0], tick[1], tick[2], tick[3], tick[4])  # non-null since 0003 (equity is not null)
    return _point(*row[:5]) if row is not None else None


def _first_point(db: Session, session_id: int) -> tuple[AccountPoint, int] | None:
    row = db.execute(
        select(AccountBalance.market_time, AccountBalance.equity, AccountBalance.units, AccountBalance.unit_value,
               AccountBalance.performance_index, AccountBalance.id)
        .where(AccountBalance.session_id == session_id)
        .order_by(AccountBalance.id)
        .limit(1)
    ).first()
    return (_point(*row[:5]), row[5]) if row is not None else None


def window_totals(db: Session, session_id: int, *, after: datetime | None = None,
                  after_id: int | None = None) -> WindowTotals:
    """Net capital flows, realised P&L and fees of the rows after market time ``after`` (or after ledger row
    ``after_id``). Summed exactly: by the database on PostgreSQL (NUMERIC), in Python on SQLite (decimal text)."""
    kinds = (*CAPITAL_FLOW_KINDS, Kind.RESET, Kind.TRADE_PNL, Kind.FEE)
    where = [AccountBalance.session_id == session_id, AccountBalance.kind.in_(kinds)]
    if after is not None:
        where.append(AccountBalance.market_time > after)
    if after_id is not None:
        where.append(AccountBalance.id > after_id)
    sums: dict[str, Decimal] = {}
    if db.get_bind().dialect.name == "postgresql":
        for kind, total in db.execute(
            select(AccountBalance.kind, func.sum(AccountBalance.delta)).where(*where).group_by(AccountBalance.kind)
        ).all():
            sums[kind] = Decimal(total)
    else:
        for kind, delta in db.execute(select(AccountBalance.kind, AccountBalance.delta).where(*where)).all():
            sums[kind] = sums.get(kind, ZERO) + delta
    flows = sum((sums.get(k, ZERO) for k in (*CAPITAL_FLOW_KINDS, Kind.RESET)), ZERO)
    return WindowTotals(net_flows=flows, realized_pnl=sums.get(Kind.TRADE_PNL, ZERO), fees=-sums.get(Kind.FEE, ZERO))


def summarize(db: Session, session: TradingSession, *, recent: int = 5) -> BalanceSummary:
    """The account now and over the last 24 market hours (the window ends at the newest applied candle's close).

    An account younger than 24 hours compares with its first ledger row (the starting capital), so the figures
    read "since start".
    """
    recent_rows = list(
        db.execute(
            select(AccountBalance)
            .where(AccountBalance.session_id == session.id)
            .order_by(AccountBalance.id.desc())
            .limit(max(recent, 1))
        ).scalars()
    )
    latest = recent_rows[0] if recent_rows else None
    positions = open_positions(db, session.id)
    state = ledger.unit_state(session)
    moment = session.market_time or utcnow()  # the last applied close; the wall clock before any candle
    now = AccountPoint(moment, ledger.equity_of(session, positions), state.units, state.unit_value,
                       state.performance_index)
    unrealized = accounting.unrealized_pnl(ledger.marked_value(positions, session.mark_price),
                                           session.reserved_balance)
    since = moment - timedelta(hours=24)
    start = point_at(db, session, since)
    if start is not None:
        totals = window_totals(db, session.id, after=since)
    else:
        first = _first_point(db, session.id)
        start = first[0] if first is not None else now
        totals = window_totals(db, session.id, after_id=first[1]) if first is not None else WindowTotals()
    return BalanceSummary(session=session, latest=latest, recent=recent_rows[:recent], now=now, start=start,
                          window=totals, unrealized_pnl=unrealized)


def history_page(
    db: Session, session_id: int, *, limit: int = 50, before: int | None = None
) -> tuple[list[AccountBalance], int | None]:
    """Newest first, keyset-paginated by ledger id; returns the page and the cursor for the next one."""
    if not 1 <= limit <= ledger.MAX_PAGE:
        raise ledger.InvalidChange(f"limit must be between 1 and {ledger.MAX_PAGE}")
    return keyset_page(db, select(AccountBalance).where(AccountBalance.session_id == session_id), AccountBalance.id,
                       limit=limit, before=before)


def read_summary(session_id: int | None = None, *, engine: Engine) -> BalanceSummary:
    with read_transaction(engine) as db:
        return summarize(db, select_session(db, session_id))
