"""`atb db verify` checks each closed trade against its ledger rows and its position (rule 5), reads only the tick
rows written with the ledger, in the order they were applied, checks the database it is given, and reports a
ledger whose opening row is gone rather than failing on it. Each account is worked by hand.

The round trips (0.01 BTC each, fees as the broker would charge them):

| trade | entry | cost | entry fee | exit | exit fee | P&L (exit − entry) × 0.01 | fees |
|---|---|---|---|---|---|---|---|
| 1 | 60,000 | 600.00 | 0.60 | 62,000 | 0.62 | 20.00 | 1.22 |
| 2 | 62,000 | 620.00 | 0.62 | 61,000 | 0.61 | −10.00 | 1.23 |
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import ledger_testing
import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from chalicelib import ledger
from chalicelib.balances import change_balance
from chalicelib.db.models import AccountBalance, Position, TickLog, Trade, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
OWNER = Actor("owner")


def _start(engine: Engine, amount: str, symbol: str = "BTCUSDT", exchange: str = "x") -> int:
    with write_transaction(engine) as db:
        return ledger.start_session(db, strategy="a", symbol=symbol, timeframe="1h", exchange=exchange, mode="paper",
                                    initial_balance=Decimal(amount), now=T0, market_time=T0).id


def _buy(engine: Engine, sid: int, price: str, fee: str, quantity: str = "0.01") -> int:
    """A long of ``quantity`` BTC at ``price``: its cost reserved and its entry fee charged (one fee row)."""
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        return ledger_testing.buy(db, session, quantity=quantity, price=price, fee=fee, when=T0, strategy="a").id


def _sell(engine: Engine, sid: int, position_id: int, price: str, fee: str) -> int:
    """The position sold at ``price`` with an exit fee: its fee and trade_pnl rows, and its trade."""
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        position = db.get(Position, position_id)
        assert position is not None
        return ledger_testing.sell(db, session, position, price=price, fee=fee, when=T0).id


def _one_round_trip(engine: Engine) -> tuple[int, int, int]:
    """$1,000 and trade 1 of the table: (account, position, trade)."""
    sid = _start(engine, "1000")
    position = _buy(engine, sid, "60000", "0.60")
    return sid, position, _sell(engine, sid, position, "62000", "0.62")


def _problems(engine: Engine) -> list[str]:
    [account] = verify(engine).sessions
    return account.problems


def test_a_clean_round_trip_verifies(engine: Engine) -> None:
    _one_round_trip(engine)
    assert _problems(engine) == []


def test_a_trade_whose_pnl_row_is_missing_is_named_with_missing_and_a_dash(engine: Engine) -> None:
    _, position, trade = _one_round_trip(engine)
    with write_transaction(engine) as db:
        db.execute(delete(AccountBalance).where(AccountBalance.reference == f"trade:{position}:pnl"))
    assert f"trade {trade}: realised P&L 20.00 ≠ its ledger row (missing): -" in _problems(engine)


def test_a_trade_whose_pnl_was_changed_is_named_against_its_ledger_row_its_prices_and_its_position(
        engine: Engine) -> None:
    """The trade says 21.00; its trade_pnl row, (62,000 − 60,000) × 0.01 and its position all say 20.00."""
    _, position, trade = _one_round_trip(engine)
    with write_transaction(engine) as db:
        [pnl_row] = db.execute(select(AccountBalance.id).where(
            AccountBalance.reference == f"trade:{position}:pnl")).scalars()
        db.execute(update(Trade).where(Trade.id == trade).values(realized_pnl=Decimal(21)))
    assert _problems(engine) == [
        f"trade {trade}: realised P&L 21.00 ≠ its ledger row {pnl_row}: 20.00",
        f"trade {trade}: realised P&L 21.00 ≠ (exit − entry) × quantity",
        f"trade {trade}: realized pnl 21.00000000 ≠ its position {position}'s 20.00000000",
    ]


def test_a_trade_whose_quantity_differs_from_its_positions_is_named(engine: Engine) -> None:
    """0.02 BTC × (62,000 − 60,000) would be 40.00, not the 20.00 the trade booked."""
    _, position, trade = _one_round_trip(engine)
    with write_transaction(engine) as db:
        db.execute(update(Trade).where(Trade.id == trade).values(quantity=Decimal("0.02")))
    assert _problems(engine) == [
        f"trade {trade}: realised P&L 20.00 ≠ (exit − entry) × quantity",
        f"trade {trade}: quantity 0.020000000000 ≠ its position {position}'s 0.010000000000",
    ]


def test_trades_of_another_accounts_positions_are_each_named(engine: Engine) -> None:
    """Account B's two trades moved into account A: A has none of their rows (no P&L row, no fee charged, 0.00) and
    not their positions; the first one named does not stop the check of the second; B, whose positions and rows are
    intact, verifies."""
    a = _start(engine, "1000")
    b = _start(engine, "1000", exchange="y")
    first = _buy(engine, b, "60000", "0.60")
    t1 = _sell(engine, b, first, "62000", "0.62")
    second = _buy(engine, b, "62000", "0.62")
    t2 = _sell(engine, b, second, "61000", "0.61")
    with write_transaction(engine) as db:
        db.execute(update(Trade).where(Trade.session_id == b).values(session_id=a))
    by_id = {s.session_id: s for s in verify(engine).sessions}
    assert by_id[b].problems == []
    assert by_id[a].problems == [
        f"trade {t1}: realised P&L 20.00 ≠ its ledger row (missing): -",
        f"trade {t1}: fees 1.22 ≠ its ledger fee rows (0.00)",
        f"trade {t1}: position {first} is not this account's",
        f"trade {t2}: realised P&L -10.00 ≠ its ledger row (missing): -",
        f"trade {t2}: fees 1.23 ≠ its ledger fee rows (0.00)",
        f"trade {t2}: position {second} is not this account's",
    ]


def test_a_trade_whose_exit_fee_row_is_missing_is_named_with_the_fee_its_rows_do_charge(engine: Engine) -> None:
    _, position, trade = _one_round_trip(engine)
    with write_transaction(engine) as db:
        db.execute(delete(AccountBalance).where(AccountBalance.reference == f"trade:{position}:exit_fee"))
    assert f"trade {trade}: fees 1.22 ≠ its ledger fee rows (0.60)" in _problems(engine)


def test_a_legacy_tick_row_without_a_ledger_version_is_not_read(engine: Engine) -> None:
    """A tick row from before migration 0003 (no market time, equity, units or ledger version) says nothing about
    the ledger: the account verifies."""
    sid = _start(engine, "1000")
    with write_transaction(engine) as db:
        db.add(TickLog(session_id=sid, symbol="BTCUSDT", candle_time=T0 - HOUR, close_price=Decimal(100),
                       decision="hold", processed_at=T0))
    assert _problems(engine) == []


def _candle(engine: Engine, sid: int, symbol: str, close: str) -> None:
    """Apply ``symbol``'s 00:00 candle as the tick does: mark the wallet at its close and write its tick row."""
    with write_transaction(engine) as db:
        ledger_testing.apply_candle(db, ledger.lock_session(db, sid), symbol, close, candle_time=T0)


def _buy_pair(db: Session, session: TradingSession, symbol: str, quantity: str, price: str, cost: str,
              fee: str) -> None:
    ledger_testing.buy(db, session, symbol=symbol, quantity=quantity, price=price, cost=cost, fee=fee, when=T0,
                       strategy="a")


def test_tick_rows_are_walked_in_the_order_they_were_applied_not_by_pair(engine: Engine) -> None:
    """ETH's candle is applied before BTC's (a late pair's candle comes after the others), a deposit between them:

    | row / tick | cash | BTC (0.01) | ETH (0.5) | equity |
    |---|---|---|---|---|
    | ETH fee | 7,967.97 | 580.00 (cost) | 1,450.00 (cost) | 9,997.97 |
    | ETH tick, close 3,000 | 7,967.97 | 580.00 (cost: no BTC close yet) | 1,500.00 | 10,047.97 |
    | deposit 100 | 8,067.97 | 580.00 (cost) | 1,500.00 | 10,147.97 |
    | BTC tick, close 60,000 | 8,067.97 | 600.00 | 1,500.00 | 10,167.97 |
    """
    sid = _start(engine, "10000", symbol="BTCUSDT,ETHUSDT")
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        _buy_pair(db, session, "BTCUSDT", "0.01", "58000", "580", "0.58")
        _buy_pair(db, session, "ETHUSDT", "0.5", "2900", "1450", "1.45")
    _candle(engine, sid, "ETHUSDT", "3000")
    change_balance("deposit", Decimal(100), reason="owner", actor=OWNER, session_id=sid, engine=engine)
    _candle(engine, sid, "BTCUSDT", "60000")
    with read_transaction(engine) as db:
        ticks = [(t.symbol, t.equity) for t in db.execute(
            select(TickLog).where(TickLog.session_id == sid).order_by(TickLog.id)).scalars()]
        equities = list(db.execute(select(AccountBalance.equity).where(AccountBalance.session_id == sid)
                                   .order_by(AccountBalance.id)).scalars())
    assert ticks == [("ETHUSDT", Decimal("10047.97")), ("BTCUSDT", Decimal("10167.97"))]
    assert equities == [Decimal(10000), Decimal("9999.42"), Decimal("9997.97"), Decimal("10147.97")]
    assert _problems(engine) == []


def test_verify_checks_the_database_it_is_given_not_the_configured_one(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backtest verifies its own throwaway database whatever DATABASE_URL names (here a database never
    migrated)."""
    sid = _start(engine, "1000")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'configured.sqlite3'}")
    report = verify(engine)
    assert report.schema.at_head
    assert [(s.session_id, s.problems) for s in report.sessions] == [(sid, [])]
    assert report.ok


def test_a_ledger_whose_opening_row_was_deleted_is_reported_not_a_crash(engine: Engine) -> None:
    """$1,000, a position opened (its fee row) and $100 deposited; the initial row deleted: the first row read is
    the fee, which is not the starting capital, and the deposit after it is still walked."""
    sid = _start(engine, "1000")
    _buy(engine, sid, "60000", "0.60")
    change_balance("deposit", Decimal(100), reason="owner", actor=OWNER, session_id=sid, engine=engine)
    with write_transaction(engine) as db:
        rows = list(db.execute(select(AccountBalance).where(AccountBalance.session_id == sid)
                               .order_by(AccountBalance.id)).scalars())
        assert [r.kind for r in rows] == ["initial", "fee", "deposit"]
        fee = rows[1].id
        db.execute(delete(AccountBalance).where(AccountBalance.id == rows[0].id))
    assert _problems(engine) == [
        f"ledger row {fee} (fee): the first row is not the starting capital (initial, reset or recovery)",
        f"ledger row {fee} (fee): the first row's balance after 999.40 is not its own amount -0.60",
        # the fee row holds the 1,000 units the initial row issued, valued at 999.40 / 1,000; nothing issued them
        f"ledger row {fee} (fee): units 1000.000000000000000000 × value per unit 0.999400000000000000 do not follow "
        "from the row before by the unit rules (expected 0 × 0.999400000000000000)",
        # the account's cache still counts the 1,000 the deleted row brought in; the ledger shows only the deposit
        "cached net contributions 1100.00 ≠ initial capital and flows since the last reset 100.00",
    ]


def test_accounts_are_reported_in_the_order_they_were_opened(engine: Engine) -> None:
    """The first account took a deposit after the second opened (on PostgreSQL its row now lies after the second's):
    the report still lists the first account first."""
    first = _start(engine, "1000")
    second = _start(engine, "500", exchange="y")
    change_balance("deposit", Decimal(100), reason="owner", actor=OWNER, session_id=first, engine=engine)
    report = verify(engine)
    assert [s.session_id for s in report.sessions] == [first, second]
    assert report.ok
