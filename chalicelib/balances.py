"""Use cases around a session's balance, shared by the CLI and the HTTP API.

Each write use case frames exactly one transaction (``write_transaction``), takes the session lock through the
ledger, and commits; each read runs in one snapshot. Callers translate the domain errors raised here into exit
codes or HTTP statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from chalicelib import ledger
from chalicelib.db.models import AccountBalance, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor, LedgerError

ChangeOp = Literal["set", "deposit", "withdraw"]
MAX_HISTORY_PAGE = 500


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
        raise NoActiveSession("no active trading session; start one with `atb sessions start` or `atb live`")
    if len(active) > 1:
        raise AmbiguousSession(active)
    return active[0]


@dataclass(frozen=True)
class ChangeResult:
    session: TradingSession
    entry: AccountBalance
    replayed: bool  # True when an idempotency key matched an earlier request: nothing was changed now


def change_balance(
    op: ChangeOp,
    amount: Decimal,
    *,
    reason: str,
    actor: Actor,
    session_id: int | None = None,
    idempotency_key: str | None = None,
    engine: Engine | None = None,
    now: datetime | None = None,
) -> ChangeResult:
    """A manual capital change (set / deposit / withdraw) in one transaction under the session lock.

    With an idempotency key, a retry of the same request returns the first result and changes nothing.
    """
    with write_transaction(engine) as db:
        target = select_session(db, session_id)
        session = ledger.lock_session(db, target.id)
        assert session is not None
        reference = f"request:{idempotency_key}" if idempotency_key else None
        if reference:
            earlier = ledger.entry_by_reference(db, session.id, reference)
            if earlier is not None:
                return ChangeResult(session, earlier, replayed=True)
        if session.status != "active":
            raise ledger.InvalidChange(f"session #{session.id} has ended; its balance can no longer change")
        if op == "set":
            entry = ledger.record_manual_set(db, session, amount, reason=reason, actor=actor,
                                             reference=reference, now=now)
        elif op == "deposit":
            entry = ledger.record_deposit(db, session, amount, reason=reason, actor=actor,
                                          reference=reference, now=now)
        elif op == "withdraw":
            entry = ledger.record_withdrawal(db, session, amount, reason=reason, actor=actor,
                                             reference=reference, now=now)
        else:  # pragma: no cover - typed away
            raise ledger.InvalidChange(f"unknown operation {op!r}")
        return ChangeResult(session, entry, replayed=False)


@dataclass(frozen=True)
class BalanceSummary:
    session: TradingSession
    latest: AccountBalance | None
    balance_24h_ago: Decimal | None
    change_24h_percent: Decimal | None
    recent: list[AccountBalance]


def balance_change_percent(current: Decimal, before: Decimal | None) -> Decimal | None:
    """Percent change from ``before`` to ``current``, two decimals; None when there is no base to compare."""
    if before is None or before == 0:
        return None
    return ((current - before) / before * 100).quantize(Decimal("0.01"))


def balance_at(db: Session, session_id: int, moment: datetime) -> AccountBalance | None:
    """The ledger row in force at ``moment`` (the newest one written at or before it)."""
    return db.execute(
        select(AccountBalance)
        .where(AccountBalance.session_id == session_id, AccountBalance.last_updated <= moment)
        .order_by(AccountBalance.last_updated.desc(), AccountBalance.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def summarize(db: Session, session: TradingSession, *, now: datetime | None = None,
              recent: int = 5) -> BalanceSummary:
    """Current balance, the balance in force 24 hours ago and the change since, and the last few entries.

    When the session is younger than 24 hours the comparison base is its first ledger row (the starting
    capital), so the figure reads "change since start".
    """
    now = now or utcnow()
    recent_rows = list(
        db.execute(
            select(AccountBalance)
            .where(AccountBalance.session_id == session.id)
            .order_by(AccountBalance.id.desc())
            .limit(max(recent, 1))
        ).scalars()
    )
    latest = recent_rows[0] if recent_rows else None
    base = balance_at(db, session.id, now - timedelta(hours=24))
    if base is None:
        base = db.execute(
            select(AccountBalance)
            .where(AccountBalance.session_id == session.id)
            .order_by(AccountBalance.id)
            .limit(1)
        ).scalar_one_or_none()
    before = base.total_balance if base is not None else None
    return BalanceSummary(
        session=session,
        latest=latest,
        balance_24h_ago=before,
        change_24h_percent=balance_change_percent(session.total_balance, before),
        recent=recent_rows[:recent],
    )


def history_page(
    db: Session, session_id: int, *, limit: int = 50, before: int | None = None
) -> tuple[list[AccountBalance], int | None]:
    """Newest first, keyset-paginated by ledger id; returns the page and the cursor for the next one."""
    if not 1 <= limit <= MAX_HISTORY_PAGE:
        raise ledger.InvalidChange(f"limit must be between 1 and {MAX_HISTORY_PAGE}")
    stmt = select(AccountBalance).where(AccountBalance.session_id == session_id)
    if before is not None:
        stmt = stmt.where(AccountBalance.id < before)
    rows = list(db.execute(stmt.order_by(AccountBalance.id.desc()).limit(limit + 1)).scalars())
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor


def read_summary(session_id: int | None = None, *, engine: Engine | None = None) -> BalanceSummary:
    with read_transaction(engine) as db:
        return summarize(db, select_session(db, session_id))
