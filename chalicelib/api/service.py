"""The API's use cases: each read runs in one snapshot (``read_transaction``), each write is a balances use case.

Results are plain dicts (money as ``Decimal``) shaped like the response models in ``schemas``; the handlers only
translate HTTP into these calls and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chalicelib.ledger.vocabulary import REFERENCE_LENGTH, Kind, request_reference
from chalicelib.money import quantize_money

if TYPE_CHECKING:

    from chalicelib.db.models import AccountBalance, Position, TradingSession
    from chalicelib.ledger import Actor


def unrealized_pnl(position: Position, close: Decimal | None) -> Decimal | None:
    """Gross P&L if the position were closed at ``close`` (fees excluded)."""
    if close is None:
        return None
    move = close - position.entry_price if position.side == "long" else position.entry_price - close
    return quantize_money(move * position.quantity)


def balance(session_id: int | None) -> dict[str, Any]:
    """The account: balance, equity, performance apart from capital flows, the 24 h window, recent entries."""
    from chalicelib.balances import select_session, summarize
    from chalicelib.db.uow import read_transaction
    from chalicelib.views import summary_view

    with read_transaction() as db:
        return summary_view(summarize(db, select_session(db, session_id)))


def change_result_view(session: TradingSession, entry: AccountBalance) -> dict[str, Any]:
    """The response to a balance change, built from the ledger row alone so a replay returns the same body."""
    from chalicelib.views import entry_view

    return {
        "session_id": session.id,
        "base_currency": session.base_currency,
        "current_balance": entry.total_balance,
        "available_balance": entry.available_balance,
        "reserved_balance": entry.reserved_balance,
        "entry": entry_view(entry),
    }


@dataclass(frozen=True)
class ChangeOutcome:
    body: dict[str, Any]
    replayed: bool
    matches_request: bool  # False when an idempotency key is reused for a different change


_KIND_OF = {"set": Kind.MANUAL_SET, "deposit": Kind.DEPOSIT, "withdraw": Kind.WITHDRAWAL}


#: Longest token name (``auth``) and the ledger's reference column: ``request:{token name}:{key}`` must fit.
MAX_TOKEN_NAME = 32
MAX_IDEMPOTENCY_KEY = REFERENCE_LENGTH - len(request_reference("")) - MAX_TOKEN_NAME - 1  # 87


def change_balance(op: str, amount: Decimal, *, reason: str, actor: Actor, session_id: int | None,
                   idempotency_key: str | None) -> ChangeOutcome:
    """A manual change; an Idempotency-Key is scoped to the token that sent it (its name), so another token
    reusing the same key makes its own change instead of receiving someone else's (reference
    ``request:{token name}:{key}``)."""
    from chalicelib import balances

    scoped = f"{actor.name}:{idempotency_key}" if idempotency_key is not None else None
    result = balances.change_balance(op, amount, reason=reason, actor=actor,  # type: ignore[arg-type]
                                     session_id=session_id, idempotency_key=scoped)
    entry = result.entry
    matches = True
    if result.replayed:
        same_amount = (entry.total_balance == amount if op == "set"
                       else entry.delta == (amount if op == "deposit" else -amount))
        matches = entry.kind == _KIND_OF[op] and same_amount and entry.update_reason == reason.strip()
    return ChangeOutcome(change_result_view(result.session, entry), result.replayed, matches)


def history(session_id: int | None, limit: int, before: int | None) -> dict[str, Any]:
    from chalicelib.balances import history_page, select_session
    from chalicelib.db.uow import read_transaction
    from chalicelib.views import entry_view

    with read_transaction() as db:
        session = select_session(db, session_id)
        rows, cursor = history_page(db, session.id, limit=limit, before=before)
        entries = [entry_view(r) for r in rows]
    return {"session_id": session.id, "limit": limit, "entries": entries,
            "next_cursor": str(cursor) if cursor is not None else None}


def positions(session_id: int | None) -> dict[str, Any]:
    """Open positions marked at the account's last close (the mark the tick keeps with the balance)."""
    from chalicelib.balances import select_session
    from chalicelib.db.uow import read_transaction
    from chalicelib.ledger import open_positions
    from chalicelib.views import position_view

    with read_transaction() as db:
        session = select_session(db, session_id)
        close, close_at = session.mark_price, session.market_time
        views = []
        for p in open_positions(db, session.id):
            view = position_view(p)
            view["last_close"] = close
            view["unrealized_pnl"] = unrealized_pnl(p, close)
            views.append(view)
    return {"session_id": session.id, "last_close": close, "last_close_at": close_at if close is not None else None,
            "positions": views}


def trades(session_id: int | None, limit: int, before: int | None) -> dict[str, Any]:
    """Closed trades, newest first, keyset-paginated by trade id."""
    from sqlalchemy import select

    from chalicelib.balances import select_session
    from chalicelib.db.models import Trade
    from chalicelib.db.uow import read_transaction
    from chalicelib.views import trade_view

    with read_transaction() as db:
        session = select_session(db, session_id)
        stmt = select(Trade).where(Trade.session_id == session.id)
        if before is not None:
            stmt = stmt.where(Trade.id < before)
        rows = list(db.execute(stmt.order_by(Trade.id.desc()).limit(limit + 1)).scalars())
        cursor = rows[limit - 1].id if len(rows) > limit else None
        views = [trade_view(t) for t in rows[:limit]]
    return {"session_id": session.id, "limit": limit, "trades": views,
            "next_cursor": str(cursor) if cursor is not None else None}


def sessions(status: str | None) -> dict[str, Any]:
    from sqlalchemy import select

    from chalicelib.db.models import TradingSession
    from chalicelib.db.uow import read_transaction
    from chalicelib.views import session_view

    with read_transaction() as db:
        stmt = select(TradingSession).order_by(TradingSession.id)
        if status is not None:
            stmt = stmt.where(TradingSession.status == status)
        return {"sessions": [session_view(s) for s in db.execute(stmt).scalars()]}


def health(now: datetime | None = None) -> tuple[int, dict[str, Any]]:
    """Database reachable, schema at head, age of the newest tick. 503 unless the first two hold.

    Says nothing private: no balances, no revision ids, no hostnames, no error text.
    """
    import logging

    from sqlalchemy import func, select

    from chalicelib.db.engine import get_engine
    from chalicelib.db.migrate import schema_status
    from chalicelib.db.models import TickLog, TradingSession
    from chalicelib.db.types import utcnow

    now = now or utcnow()
    report: dict[str, Any] = {"status": "unavailable", "database": "unreachable", "schema_at_head": None,
                              "last_tick_at": None, "last_tick_age_seconds": None, "checked_at": now}
    try:
        engine = get_engine()
        at_head = schema_status(engine).at_head
        with engine.connect() as conn:
            last = conn.execute(select(func.max(TradingSession.last_tick_at))).scalar_one_or_none()
            if last is None:
                last = conn.execute(
                    select(TickLog.processed_at).order_by(TickLog.id.desc()).limit(1)
                ).scalar_one_or_none()
    except Exception as exc:
        logging.getLogger("atb.api").warning("health check: database unavailable (%s)", type(exc).__name__)
        return 503, report
    report.update(database="reachable", schema_at_head=at_head, status="ok" if at_head else "degraded",
                  last_tick_at=last,
                  last_tick_age_seconds=int((now - last).total_seconds()) if last is not None else None)
    return (200 if at_head else 503), report
