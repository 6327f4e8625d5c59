"""The API's use cases: each read runs in one snapshot (``read_transaction``), each write is a balances use case.

Results are the response models of ``schemas`` (money as ``Decimal``): the runtime shape of every answer. The
handlers only translate HTTP into these calls and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from chalicelib import logs
from chalicelib.api import schemas
from chalicelib.ledger.vocabulary import REFERENCE_LENGTH, request_reference

if TYPE_CHECKING:
    from chalicelib.balances import ChangeOp
    from chalicelib.ledger import Actor

_logger = Logger(service=logs.SERVICE, child=True)


def balance(session_id: int | None) -> schemas.BalanceResponse:
    """The account: balance, equity, performance apart from capital flows, the 24 h window, recent entries."""
    from chalicelib.balances import read_summary
    from chalicelib.db.engine import get_engine

    summary = read_summary(session_id, engine=get_engine())  # one snapshot: BEGIN, two statements, ROLLBACK
    return schemas.BalanceResponse.of(summary)  # built after the snapshot: the connection goes back at once


def exposure(session_id: int | None, limit: int, before: datetime | None) -> schemas.ExposureResponse:
    """The exposure now and a page of its history (``balances.read_exposure``: one snapshot)."""
    from chalicelib.balances import read_exposure
    from chalicelib.db.engine import get_engine

    report = read_exposure(session_id, limit=limit, before=before, engine=get_engine())
    return schemas.ExposureResponse.of(report, limit)


@dataclass(frozen=True)
class ChangeOutcome:
    body: schemas.BalanceChangeResponse
    replayed: bool
    matches_request: bool  # False when an idempotency key is reused for a different change


#: Longest token name (``auth``) and the ledger's reference column: ``request:{token name}:{key}`` must fit.
MAX_TOKEN_NAME = 32
MAX_IDEMPOTENCY_KEY = REFERENCE_LENGTH - len(request_reference("")) - MAX_TOKEN_NAME - 1  # 87


def change_balance(op: ChangeOp, amount: Decimal, *, reason: str, actor: Actor, session_id: int | None,
                   idempotency_key: str | None) -> ChangeOutcome:
    """A manual change (``balances.change_balance``, which owns the idempotency rules), as the API answers it."""
    from chalicelib import balances
    from chalicelib.db.engine import get_engine

    result = balances.change_balance(op, amount, reason=reason, actor=actor, session_id=session_id,
                                     idempotency_key=idempotency_key, engine=get_engine())
    return ChangeOutcome(schemas.BalanceChangeResponse.of(result.session, result.entry), result.replayed,
                         result.matches_request)


def history(session_id: int | None, limit: int, before: int | None) -> schemas.HistoryPage:
    from chalicelib.balances import history_page, select_session
    from chalicelib.db.uow import read_transaction

    with read_transaction() as db:
        session = select_session(db, session_id)
        rows, cursor = history_page(db, session.id, limit=limit, before=before)
    return schemas.HistoryPage(session_id=session.id, limit=limit, entries=[schemas.LedgerEntry.of(r) for r in rows],
                               next_cursor=str(cursor) if cursor is not None else None)


def positions(session_id: int | None) -> schemas.PositionsResponse:
    """Open positions, each marked at its pair's last close (the marks the tick keeps with the balance)."""
    from chalicelib.balances import select_session
    from chalicelib.db.uow import read_transaction
    from chalicelib.ledger import open_positions

    with read_transaction() as db:
        session = select_session(db, session_id)
        marks, close_at = session.marks, session.market_time
        symbols = session.symbols
        held = open_positions(db, session.id)
    # One pair: its mark is the account's last close; several: each position carries its own.
    close = marks[symbols[0]].close if len(symbols) == 1 and symbols[0] in marks else None
    return schemas.PositionsResponse(
        session_id=session.id, last_close=close, last_close_at=close_at if marks else None,
        positions=[schemas.PositionOut.of(p, marks.get(p.symbol)) for p in held])


def trades(session_id: int | None, limit: int, before: int | None) -> schemas.TradesPage:
    """Closed trades, newest first, keyset-paginated by trade id."""
    from sqlalchemy import select

    from chalicelib.balances import select_session
    from chalicelib.db.models import Trade
    from chalicelib.db.pages import keyset_page
    from chalicelib.db.uow import read_transaction

    with read_transaction() as db:
        session = select_session(db, session_id)
        rows, cursor = keyset_page(db, select(Trade).where(Trade.session_id == session.id), Trade.id,
                                   limit=limit, before=before)
    return schemas.TradesPage(session_id=session.id, limit=limit, trades=[schemas.TradeOut.of(t) for t in rows],
                              next_cursor=str(cursor) if cursor is not None else None)


def sessions(status: str | None) -> schemas.SessionsResponse:
    from sqlalchemy import select

    from chalicelib.db.models import TradingSession
    from chalicelib.db.uow import read_transaction

    with read_transaction() as db:
        stmt = select(TradingSession).order_by(TradingSession.id)
        if status is not None:
            stmt = stmt.where(TradingSession.status == status)
        rows = list(db.execute(stmt).scalars())
    return schemas.SessionsResponse(sessions=[schemas.SessionOut.of(s) for s in rows])


def health(now: datetime | None = None) -> tuple[int, schemas.HealthResponse]:
    """Database reachable, schema at head, age of the newest tick. 503 unless the first two hold.

    Says nothing private: no balances, no revision ids, no hostnames, no error text.
    """
    from sqlalchemy import func, select

    from chalicelib.db.engine import get_engine
    from chalicelib.db.migrate import schema_status
    from chalicelib.db.models import TickLog, TradingSession
    from chalicelib.db.types import utcnow

    now = now or utcnow()
    report = schemas.HealthResponse(status="unavailable", database="unreachable", schema_at_head=None,
                                    last_tick_at=None, last_tick_age_seconds=None, checked_at=now)
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
        _logger.warning("health check: database unavailable (%s)", type(exc).__name__)
        return 503, report
    report = schemas.HealthResponse(
        status="ok" if at_head else "degraded", database="reachable", schema_at_head=at_head, last_tick_at=last,
        last_tick_age_seconds=int((now - last).total_seconds()) if last is not None else None, checked_at=now)
    return (200 if at_head else 503), report
