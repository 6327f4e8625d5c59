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


def hold_btc_and_eth(db, session, *, opened_at, marked_at, market_time, stops=False, strategy_version=None):
    """The hand-worked two-pair wallet of the API and dashboard tests: 0.01 BTC bought at 58,000 (cost 580, fee
    0.58) and 0.5 ETH at 2,900 (cost 1,450, fee 1.45) at ``opened_at``, both marked at 60,000 and 3,000 by candles
    opened at ``marked_at``. With ``stops`` each has a stop 3 % below and a target 6 % above its entry. Returns the
    positions."""
    from decimal import Decimal

    from chalicelib import ledger
    from chalicelib.db.models import Position
    from chalicelib.valuation import Mark

    held = []
    for symbol, qty, price, cost, fee in (("BTCUSDT", "0.01", "58000", "580", "0.58"),
                                          ("ETHUSDT", "0.5", "2900", "1450", "1.45")):
        entry = Decimal(price)
        p = Position(session_id=session.id, symbol=symbol, side="long", status="open", entry_price=entry,
                     quantity=Decimal(qty), cost=Decimal(cost), entry_time=opened_at, fees=Decimal(fee),
                     stop_loss=entry * Decimal("0.97") if stops else None,
                     take_profit=entry * Decimal("1.06") if stops else None,
                     strategy="ml_basic", strategy_version=strategy_version)
        db.add(p)
        db.flush()
        record_position_opened(db, session, cost=Decimal(cost), fee=Decimal(fee),
                               reference=f"position:{p.id}:open", now=opened_at)
        held.append(p)
    marks = {"BTCUSDT": Mark(Decimal(60000), marked_at), "ETHUSDT": Mark(Decimal(3000), marked_at)}
    book = ledger.Batch(db, session)
    book.mark(marks=marks, equity=ledger.equity_of(session, held, marks), market_time=market_time)
    book.write()
    return held
