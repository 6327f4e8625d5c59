"""``atb db verify``: prove that every session's money adds up, or say exactly which session and rule fails.

Per session:
  1. the cached total/available/reserved equal the latest ledger row's;
  2. every row's balance follows from the one before (previous total + delta), and the first row is the
     starting capital, so the cached total = initial capital + Σ deltas;
  3. reserved = Σ cost of open positions;
  4. available = total − reserved ≥ 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from chalicelib.db.engine import get_engine
from chalicelib.db.migrate import SchemaStatus, schema_status
from chalicelib.db.models import AccountBalance, Position, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.money import ZERO, money_text

OPENING_KINDS = frozenset({"initial", "recovered_from_trades", "resumed", "reset"})


@dataclass
class SessionReport:
    session_id: int
    label: str
    entries: int = 0
    total: Decimal = ZERO
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    schema: SchemaStatus
    sessions: list[SessionReport]

    @property
    def ok(self) -> bool:
        return self.schema.at_head and all(s.ok for s in self.sessions)


def verify(engine: Engine | None = None) -> VerifyReport:
    engine = engine or get_engine()
    status = schema_status(engine)
    if not status.at_head:
        return VerifyReport(status, [])
    reports: list[SessionReport] = []
    with read_transaction(engine) as db:
        for session in db.execute(select(TradingSession).order_by(TradingSession.id)).scalars():
            reports.append(_verify_session(db, session))
    return VerifyReport(status, reports)


def _verify_session(db: Session, session: TradingSession) -> SessionReport:
    report = SessionReport(
        session.id, f"{session.strategy} {session.symbol} {session.timeframe} {session.mode} ({session.status})"
    )
    problems = report.problems
    running: Decimal | None = None
    last: AccountBalance | None = None
    rows = db.execute(
        select(AccountBalance)
        .where(AccountBalance.session_id == session.id)
        .order_by(AccountBalance.id)
        .execution_options(yield_per=2000)
    ).scalars()
    for row in rows:
        report.entries += 1
        if running is None:
            if row.kind not in OPENING_KINDS:
                problems.append(f"ledger row {row.id}: first row is {row.kind}, not the starting capital")
            running = row.delta
        else:
            running += row.delta
        if row.total_balance != running:
            problems.append(
                f"ledger row {row.id} ({row.kind}): balance after is {money_text(row.total_balance)} but the "
                f"deltas so far add up to {money_text(running)}"
            )
            running = row.total_balance  # report each break once, not every row after it
        if row.available_balance != row.total_balance - row.reserved_balance:
            problems.append(f"ledger row {row.id}: available ≠ total − reserved")
        last = row
    if last is None:
        problems.append("no ledger rows: the session has no recorded starting capital")
        return report
    report.total = session.total_balance
    for name in ("total_balance", "available_balance", "reserved_balance"):
        cached, ledgered = getattr(session, name), getattr(last, name)
        if cached != ledgered:
            problems.append(
                f"cached {name.replace('_', ' ')} {money_text(cached)} ≠ latest ledger row {last.id}: "
                f"{money_text(ledgered)}"
            )
    open_costs = db.execute(
        select(Position.cost).where(Position.session_id == session.id, Position.status == "open")
    ).scalars()
    open_cost = sum(open_costs, ZERO)
    if session.reserved_balance != open_cost:
        problems.append(
            f"reserved {money_text(session.reserved_balance)} ≠ cost of open positions {money_text(open_cost)}"
        )
    if session.available_balance != session.total_balance - session.reserved_balance:
        problems.append("available ≠ total − reserved")
    if session.available_balance < 0:
        problems.append(f"available balance is negative ({money_text(session.available_balance)})")
    return report


def count_sessions(engine: Engine | None = None) -> int:
    with read_transaction(engine) as db:
        return int(db.execute(select(func.count()).select_from(TradingSession)).scalar_one())
