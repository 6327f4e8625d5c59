"""Test helpers that book a position's rows through the ledger's one write path (``ledger.Batch``), as the tick
does, for tests that set an account up by hand. Not production code: the engine books positions inside a tick."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from chalicelib import ledger
from chalicelib.db.models import AccountBalance, TradingSession
from chalicelib.db.types import utcnow


def record_position_opened(db: Session, session: TradingSession, *, cost: Decimal, fee: Decimal, reference: str,
                           held: Mapping[str, Decimal] | None = None, now: datetime | None = None) -> AccountBalance:
    """Reserve a new position's cost and charge its entry fee (one ``fee`` row); the caller added the position."""
    batch = ledger.Batch(db, session)
    batch.position_opened(cost=cost, fee=fee, reference=reference, held=held, now=now or utcnow())
    [row] = batch.write()
    return row


def record_position_closed(db: Session, session: TradingSession, *, position_id: int, pnl: Decimal,
                           exit_fee: Decimal, released_cost: Decimal, exit_reason: str = "strategy_exit",
                           now: datetime | None = None) -> AccountBalance:
    """A position sold (the caller has closed it): its ``fee`` and ``trade_pnl`` rows; returns the last."""
    batch = ledger.Batch(db, session)
    batch.position_closed(position_id=position_id, pnl=pnl, exit_fee=exit_fee, released_cost=released_cost,
                          exit_reason=exit_reason, now=now or utcnow())
    return batch.write()[-1]


def marks_at(session, close, when=None):
    """The marks of a one-pair account whose newest candle closed at ``close`` (opened at ``when``, default now)."""
    from decimal import Decimal

    from chalicelib.db.types import utcnow
    from chalicelib.valuation import Mark

    return {session.symbol: Mark(Decimal(close), when or utcnow())}
