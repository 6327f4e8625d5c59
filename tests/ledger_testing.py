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


def buy(db, session, *, quantity, price, fee, when, symbol="BTCUSDT", cost=None, strategy=None):
    """A long booked as the tick books it: the position (``cost`` default quantity × price), its cost reserved and
    its entry fee charged (one ``fee`` row). Returns the position."""
    from chalicelib.db.models import Position

    qty, entry = Decimal(quantity), Decimal(price)
    position = Position(session_id=session.id, symbol=symbol, side="long", status="open", entry_price=entry,
                        quantity=qty, cost=Decimal(cost) if cost is not None else qty * entry, entry_time=when,
                        fees=Decimal(fee), strategy=strategy)
    db.add(position)
    db.flush()
    record_position_opened(db, session, cost=position.cost, fee=Decimal(fee),
                           reference=ledger.position_reference(position.id), now=when)
    return position


def sell(db, session, position, *, price, fee, when, reason="stop_loss"):
    """``position`` sold at ``price`` with an exit fee, as the tick sells: the position closed, its trade, and its
    ``fee`` and ``trade_pnl`` rows. Returns the trade."""
    from chalicelib.db.models import Trade

    exit_price, exit_fee = Decimal(price), Decimal(fee)
    pnl = (exit_price - position.entry_price) * position.quantity
    position.status, position.exit_price, position.exit_time = "closed", exit_price, when
    position.exit_reason, position.realized_pnl, position.fees = reason, pnl, position.fees + exit_fee
    trade = Trade(session_id=session.id, position_id=position.id, symbol=position.symbol, side="long",
                  entry_price=position.entry_price, exit_price=exit_price, quantity=position.quantity,
                  entry_time=when, exit_time=when, realized_pnl=pnl, fees=position.fees, exit_reason=reason,
                  market_time=when, recorded_at=when)
    db.add(trade)
    db.flush()
    record_position_closed(db, session, position_id=position.id, pnl=pnl, exit_fee=exit_fee,
                           released_cost=position.cost, exit_reason=reason, now=when)
    return trade


def apply_candle(db, session, symbol, close, *, candle_time):
    """Apply ``symbol``'s candle opened at ``candle_time`` (an hour long) as the tick does: the wallet marked at its
    close, and its tick row."""
    from datetime import timedelta

    from chalicelib.valuation import Mark

    closes_at = candle_time + timedelta(hours=1)
    positions = ledger.open_positions(db, session.id)
    marks = dict(session.marks) | {symbol: Mark(Decimal(close), candle_time)}
    equity = ledger.equity_of(session, positions, marks)
    book = ledger.Batch(db, session, positions)
    book.mark(marks=marks, equity=equity, market_time=closes_at)
    book.write(tick_rows=[{
        "session_id": session.id, "symbol": symbol, "candle_time": candle_time, "close_price": Decimal(close),
        "decision": "hold", "detail": None, "processed_at": closes_at, "market_time": closes_at, "equity": equity,
        "units": session.units, "unit_value": session.unit_value, "ledger_version": session.version,
        "performance_index": ledger.unit_state(session).performance_index, "exposure": None}])
