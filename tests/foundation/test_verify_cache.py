"""`atb db verify` holds the session row's cached figures to the ledger and the tick rows, and every position and
trade to its ledger rows. Each account here is worked by hand:

* $1,000 untouched: 1,000 units at 1, nothing reserved.
* A trade of 0.01 BTC bought at 40,000 (cost 400, fee 0.40) and sold at 42,000 (fee 0.42): P&L 20, equity
  1,000 − 0.40 − 0.42 + 20 = 1,019.18 on 1,000 units, a value per unit (and peak) of 1.01918.
* An account recovered from its trades (migration 0002): that same trade, made before the ledger existed, has no
  ledger rows; the account opens with a ``recovered_from_trades`` row of 1,019.18 citing ``migration:0002``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ledger_testing
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from chalicelib import ledger
from chalicelib.db.models import AccountBalance, Position, TickLog, Trade, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.ledger.store import open_positions
from chalicelib.valuation import Mark
from chalicelib.verify import verify

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
OWNER = Actor("owner")


def _start(db: Session, amount: str = "1000") -> TradingSession:
    return ledger.start_session(db, strategy="a", symbol="BTCUSDT", timeframe="1h", exchange="x", mode="paper",
                                initial_balance=Decimal(amount), now=T0, market_time=T0)


def _recovered(db: Session, amount: str) -> TradingSession:
    """An account from before the ledger: its first row is migration 0002's recovery of ``amount``."""
    session = TradingSession(strategy="a", symbol="BTCUSDT", timeframe="1h", exchange="x", mode="paper",
                             status="active", initial_balance=Decimal(1000), started_at=T0, marks={})
    db.add(session)
    db.flush()
    ledger.post(db, session, kind="recovered_from_trades", delta=Decimal(amount), reason="recovered",
                reference="migration:0002", held={}, positions_value=Decimal(0), now=T0)
    return session


def _buy(db: Session, session: TradingSession, quantity: str, price: str, fee: str) -> Position:
    """A long booked through the ledger: its cost reserved and its entry fee charged (one fee row)."""
    return ledger_testing.buy(db, session, quantity=quantity, price=price, fee=fee, when=T0, strategy="a")


def _sell(db: Session, session: TradingSession, position: Position, price: str, fee: str) -> Trade:
    """``position`` sold at ``price``: its trade, and its fee and trade_pnl rows."""
    return ledger_testing.sell(db, session, position, price=price, fee=fee, when=T0, reason="strategy_exit")


def _old_trade(db: Session, session: TradingSession) -> tuple[int, int]:
    """The 40,000 → 42,000 trade as written before the ledger existed: a closed position and its trade, no rows."""
    position = Position(session_id=session.id, symbol="BTCUSDT", side="long", status="closed",
                        entry_price=Decimal(40_000), quantity=Decimal("0.01"), cost=Decimal(400), entry_time=T0,
                        exit_price=Decimal(42_000), exit_time=T0, exit_reason="strategy_exit",
                        realized_pnl=Decimal(20), fees=Decimal("0.82"), strategy="a")
    db.add(position)
    db.flush()
    trade = Trade(session_id=session.id, position_id=position.id, symbol="BTCUSDT", side="long",
                  entry_price=Decimal(40_000), exit_price=Decimal(42_000), quantity=Decimal("0.01"), entry_time=T0,
                  exit_time=T0, realized_pnl=Decimal(20), fees=Decimal("0.82"), exit_reason="strategy_exit",
                  market_time=T0, recorded_at=T0)
    db.add(trade)
    db.flush()
    return position.id, trade.id


def _candle(db: Session, session: TradingSession, close: str) -> None:
    """Apply BTC's 00:00 candle as the tick does: mark the account at its close and write its tick row."""
    positions = open_positions(db, session.id)
    marks = {"BTCUSDT": Mark(Decimal(close), T0)}
    equity = ledger.equity_of(session, positions, marks)
    book = ledger.Batch(db, session, positions)
    book.mark(marks=marks, equity=equity, market_time=T0 + HOUR)
    book.write(tick_rows=[{
        "session_id": session.id, "symbol": "BTCUSDT", "candle_time": T0, "close_price": Decimal(close),
        "decision": "hold", "detail": None, "processed_at": T0 + HOUR, "market_time": T0 + HOUR, "equity": equity,
        "units": session.units, "unit_value": session.unit_value, "ledger_version": session.version,
        "performance_index": ledger.unit_state(session).performance_index, "exposure": None}])


def _last_row(engine: Engine, sid: int) -> int:
    with read_transaction(engine) as db:
        return db.execute(select(AccountBalance.id).where(AccountBalance.session_id == sid)
                          .order_by(AccountBalance.id.desc()).limit(1)).scalar_one()


def _tamper_session(engine: Engine, sid: int, **values: Decimal) -> None:
    """Edit the session row by hand, past its CHECK constraints (a restored dump without them can hold anything)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        else:
            conn.exec_driver_sql("ALTER TABLE trading_sessions "
                                 "DROP CONSTRAINT ck_trading_sessions_available_not_negative")
        conn.execute(update(TradingSession).where(TradingSession.id == sid).values(values))
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = OFF")


def _problems(engine: Engine) -> list[str]:
    [account] = verify(engine).sessions
    return account.problems


# --- the session row's cached figures -------------------------------------------------------------------------


def test_a_tampered_cached_units_figure_is_shown_to_the_unit_scale_not_as_money(engine: Engine) -> None:
    """1,000.5 units where the ledger has 1,000: both shown to 18 places (as money both would read 1000.50 and
    1000.00, and 1,000.000000001 would read 1000.00 ≠ 1000.00); 1,000.5 units at 1 are not the $1,000."""
    with write_transaction(engine) as db:
        sid = _start(db).id
    _tamper_session(engine, sid, units=Decimal("1000.5"))
    assert _problems(engine) == [
        f"cached units 1000.500000000000000000 ≠ latest ledger row {_last_row(engine, sid)}: 1000.000000000000000000",
        "cached units 1000.500000000000000000 × value per unit 1.000000000000000000 do not reproduce the equity at "
        "the last close, 1000.00",
    ]


def test_a_cached_available_balance_that_is_not_total_less_reserved_is_named(engine: Engine) -> None:
    """Available edited to 990 of a $1,000 account with nothing reserved: 1,000 − 0 ≠ 990."""
    with write_transaction(engine) as db:
        sid = _start(db).id
    _tamper_session(engine, sid, available_balance=Decimal(990))
    assert _problems(engine) == [
        f"cached available balance 990.00 ≠ latest ledger row {_last_row(engine, sid)}: 1000.00",
        "available ≠ total − reserved",
        "cached units 1000.000000000000000000 × value per unit 1.000000000000000000 do not reproduce the equity at "
        "the last close, 990.00",
    ]


def test_a_negative_cached_available_balance_is_named_with_its_amount(engine: Engine) -> None:
    """Reserved edited to 1,010 and available to −10 (still total − reserved): nothing is open to reserve for, and
    the cash is below zero."""
    with write_transaction(engine) as db:
        sid = _start(db).id
    _tamper_session(engine, sid, available_balance=Decimal(-10), reserved_balance=Decimal(1010))
    last = _last_row(engine, sid)
    assert _problems(engine) == [
        f"cached available balance -10.00 ≠ latest ledger row {last}: 1000.00",
        f"cached reserved balance 1010.00 ≠ latest ledger row {last}: 0.00",
        "available balance is negative (-10.00)",
        "reserved 1010.00 ≠ cost of open positions 0.00",
        "cached units 1000.000000000000000000 × value per unit 1.000000000000000000 do not reproduce the equity at "
        "the last close, -10.00",
    ]


def test_a_mark_whose_candle_was_applied_before_tick_rows_had_ledger_versions_is_not_checked(engine: Engine) -> None:
    """Migration 0005 gave an account from before migration 0003 a mark at its last applied candle, whose tick row
    is a legacy one (no ledger version: not read). There is no applied tick row to hold the mark to: the account
    verifies (it is not a crash)."""
    with write_transaction(engine) as db:
        session = _start(db)
        db.add(TickLog(session_id=session.id, symbol="BTCUSDT", candle_time=T0, close_price=Decimal(42_000),
                       decision="hold", processed_at=T0 + HOUR))
        session.marks = {"BTCUSDT": Mark(Decimal(42_000), T0)}
    assert _problems(engine) == []


# --- positions and trades against their ledger rows --------------------------------------------------------------


def test_an_account_recovered_from_its_trades_accepts_its_old_trade_without_ledger_rows(engine: Engine) -> None:
    with write_transaction(engine) as db:
        _old_trade(db, _recovered(db, "1019.18"))
    assert _problems(engine) == []


def test_a_position_and_trade_without_ledger_rows_in_an_account_that_had_its_ledger_from_the_start_are_named(
        engine: Engine) -> None:
    """The same trade, but the account opened with its initial capital: nothing excuses the missing rows. (A
    position booked through the ledger after it is fine.)"""
    with write_transaction(engine) as db:
        session = _start(db)
        position_id, trade_id = _old_trade(db, session)
        _buy(db, session, "0.01", "40000", "0.4")
    assert _problems(engine) == [
        f"position {position_id}: no ledger row opened it",
        f"trade {trade_id}: realised P&L 20.00 ≠ its ledger row (missing): -",
        f"trade {trade_id}: fees 0.82 ≠ its ledger fee rows (0.00)",
    ]


def _recovered_then_traded(engine: Engine) -> dict[str, int]:
    """The recovered account (1,019.18) trades again through the ledger: 0.01 BTC 40,000 → 41,000 (fees 0.40 and
    0.41, P&L 10), then 0.01 BTC bought at 40,000 (fee 0.40) and held."""
    with write_transaction(engine) as db:
        session = _recovered(db, "1019.18")
        _, old_trade = _old_trade(db, session)
        trade = _sell(db, session, _buy(db, session, "0.01", "40000", "0.4"), "41000", "0.41")
        held = _buy(db, session, "0.01", "40000", "0.4")
        assert trade.position_id is not None
        ids = {"old trade": old_trade, "trade": trade.id, "closed": trade.position_id, "held": held.id}
    assert _problems(engine) == []
    with read_transaction(engine) as db:
        refs = dict(db.execute(select(AccountBalance.reference, AccountBalance.id)
                               .where(AccountBalance.reference.is_not(None))).all())
    ids["held fee row"] = refs[f"position:{ids['held']}:open"]
    ids["pnl row"] = refs[f"trade:{ids['closed']}:pnl"]
    return ids


def test_a_recovered_accounts_positions_after_its_old_one_are_still_checked(engine: Engine) -> None:
    """The held position's entry fee edited from 0.40 to 0.50: its fee row charged 0.40."""
    ids = _recovered_then_traded(engine)
    with write_transaction(engine) as db:
        db.execute(update(Position).where(Position.id == ids["held"]).values(fees=Decimal("0.5")))
    assert _problems(engine) == [
        f"position {ids['held']}: entry fee 0.50 ≠ its ledger row {ids['held fee row']}: 0.40"]


def test_a_recovered_accounts_trades_after_its_old_one_are_still_checked(engine: Engine) -> None:
    """The new trade's P&L edited from 10 to 11: its trade_pnl row says 10, (41,000 − 40,000) × 0.01 is 10, and
    its position says 10."""
    ids = _recovered_then_traded(engine)
    with write_transaction(engine) as db:
        db.execute(update(Trade).where(Trade.id == ids["trade"]).values(realized_pnl=Decimal(11)))
    trade = ids["trade"]
    assert _problems(engine) == [
        f"trade {trade}: realised P&L 11.00 ≠ its ledger row {ids['pnl row']}: 10.00",
        f"trade {trade}: realised P&L 11.00 ≠ (exit − entry) × quantity",
        f"trade {trade}: realized pnl 11.00000000 ≠ its position {ids['closed']}'s 10.00000000",
    ]


# --- the peak value per unit -------------------------------------------------------------------------------------


def _peak(engine: Engine, sid: int) -> Decimal:
    with read_transaction(engine) as db:
        return db.execute(select(TradingSession.peak_unit_value).where(TradingSession.id == sid)).scalar_one()


def _trade_up(db: Session, session: TradingSession) -> None:
    """40,000 → 42,000 with fees 0.40 and 0.42: equity 1,019.18 on 1,000 units."""
    _sell(db, session, _buy(db, session, "0.01", "40000", "0.4"), "42000", "0.42")


def test_a_profit_booked_between_candles_raises_the_peak_to_the_rows_own_value_per_unit(engine: Engine) -> None:
    """No candle marked the account: the peak 1.01918 is the trade_pnl row's own value per unit."""
    with write_transaction(engine) as db:
        session = _start(db)
        _trade_up(db, session)
        sid = session.id
    assert _peak(engine, sid) == Decimal("1.01918")
    assert _problems(engine) == []


def test_a_loss_after_a_profit_keeps_the_peak_the_rows_before_reached(engine: Engine) -> None:
    """Then 0.01 BTC 42,000 → 41,000 (fees 0.42 and 0.41, P&L −10): equity 1,008.35, 1.00835 a unit, under the
    peak 1.01918 the row before set."""
    with write_transaction(engine) as db:
        session = _start(db)
        _trade_up(db, session)
        _sell(db, session, _buy(db, session, "0.01", "42000", "0.42"), "41000", "0.41")
        sid, value = session.id, session.unit_value
    assert value == Decimal("1.00835")
    assert _peak(engine, sid) == Decimal("1.01918")
    assert _problems(engine) == []


def test_a_peak_a_candle_reached_is_kept_by_the_trade_after_it(engine: Engine) -> None:
    """0.01 BTC bought at 40,000 (fee 0.40: cash 599.60); the candle closes at 50,000, equity 599.60 + 500 =
    1,099.60, 1.0996 a unit (a tick row, no ledger row); sold at 45,000 (fee 0.45, P&L 50): equity 1,049.15,
    1.04915 a unit. The peak stays the candle's 1.0996."""
    with write_transaction(engine) as db:
        session = _start(db)
        position = _buy(db, session, "0.01", "40000", "0.4")
        _candle(db, session, "50000")
        _sell(db, session, position, "45000", "0.45")
        sid, value = session.id, session.unit_value
    assert value == Decimal("1.04915")
    assert _peak(engine, sid) == Decimal("1.0996")
    assert _problems(engine) == []


def test_a_reset_after_a_profit_starts_the_peak_over_at_one(engine: Engine) -> None:
    """The account at 1.01918 a unit is reset to $1,000: a new series, 1,000 units at 1, its peak 1."""
    with write_transaction(engine) as db:
        session = _start(db)
        _trade_up(db, session)
        ledger.record_reset(db, session, Decimal(1000), reason="fresh", actor=OWNER, now=T0)
        sid = session.id
    assert _peak(engine, sid) == 1
    assert _problems(engine) == []
