"""`atb db verify` values a wallet of several pairs (issue 13) the way the ledger does: each row's and each tick
row's equity is its cash plus every asset it holds at its pair's close in force, at cost before any candle, and
an asset whose pair has no close yet is left as the row has it (never a crash). A tampered row is named with every
close it was valued at. Also rule 1: a ledger that does not open with its starting capital is named on that row.

The wallet is worked by hand (the numbers of ``ledger_testing.hold_btc_and_eth``): $10,000; 0.01 BTC bought at
58,000 (cost 580, fee 0.58) and 0.5 ETH at 2,900 (cost 1,450, fee 1.45), then BTC's candle closes at 60,000, the
owner deposits $100, ETH's candle closes at 3,000 and the owner withdraws $67.97:

| row / tick | cash (available) | BTC | ETH | equity |
|---|---|---|---|---|
| 1 initial | 10,000.00 | — | — | 10,000.00 |
| 2 BTC entry fee | 9,419.42 | 580.00 (cost) | — | 9,999.42 |
| 3 ETH entry fee | 7,967.97 | 580.00 (cost) | 1,450.00 (cost) | 9,997.97 |
| BTC tick, close 60,000 | 7,967.97 | 600.00 | 1,450.00 (cost: no ETH close yet) | 10,017.97 |
| 4 deposit 100 | 8,067.97 | 600.00 | 1,450.00 (cost) | 10,117.97 |
| ETH tick, close 3,000 | 8,067.97 | 600.00 | 1,500.00 | 10,167.97 |
| 5 withdrawal 67.97 | 8,000.00 | 600.00 | 1,500.00 | 10,100.00 |
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ledger_testing
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from chalicelib import ledger
from chalicelib.db.models import AccountBalance, TickLog, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
OWNER = Actor("owner")


def _buy(db: Session, session: TradingSession, symbol: str, quantity: str, price: str, cost: str, fee: str) -> None:
    ledger_testing.buy(db, session, symbol=symbol, quantity=quantity, price=price, cost=cost, fee=fee, when=T0,
                       strategy="a")


def _candle(db: Session, session: TradingSession, symbol: str, close: str) -> None:
    """Apply ``symbol``'s 00:00 candle as the tick does: mark the wallet at its close and write its tick row."""
    ledger_testing.apply_candle(db, session, symbol, close, candle_time=T0)


def _flow(db: Session, session: TradingSession, kind: str, amount: str) -> None:
    record = ledger.record_deposit if kind == "deposit" else ledger.record_withdrawal
    record(db, session, Decimal(amount), reason="owner", actor=OWNER, now=T0 + HOUR)


def _hold_btc_and_eth_marked_one_pair_at_a_time(engine: Engine) -> int:
    with write_transaction(engine) as db:
        session = ledger.start_session(db, strategy="a", symbol="BTCUSDT,ETHUSDT", timeframe="1h", exchange="x",
                                       mode="paper", initial_balance=Decimal(10_000), now=T0, market_time=T0)
        _buy(db, session, "BTCUSDT", "0.01", "58000", "580", "0.58")
        _buy(db, session, "ETHUSDT", "0.5", "2900", "1450", "1.45")
        _candle(db, session, "BTCUSDT", "60000")
        _flow(db, session, "deposit", "100")
        _candle(db, session, "ETHUSDT", "3000")
        _flow(db, session, "withdrawal", "67.97")
        return session.id


def _rows(engine: Engine, sid: int) -> list[tuple[int, str, Decimal, Decimal]]:
    with read_transaction(engine) as db:
        return [(r.id, r.kind, r.available_balance, r.equity) for r in db.execute(
            select(AccountBalance).where(AccountBalance.session_id == sid).order_by(AccountBalance.id)).scalars()]


def _ticks(engine: Engine, sid: int) -> list[tuple[int, str, Decimal | None]]:
    with read_transaction(engine) as db:
        return [(t.id, t.symbol, t.equity) for t in db.execute(
            select(TickLog).where(TickLog.session_id == sid).order_by(TickLog.id)).scalars()]


def test_a_wallet_marked_one_pair_at_a_time_verifies_each_asset_at_its_own_close(engine: Engine) -> None:
    """The BTC tick values ETH (no close yet) as the row has it, cash + 2,050; the ETH tick values both assets at
    their closes, 600 + 1,500; the deposit between them, holding ETH with no close, is not revalued."""
    sid = _hold_btc_and_eth_marked_one_pair_at_a_time(engine)
    assert [(kind, available, equity) for _, kind, available, equity in _rows(engine, sid)] == [
        ("initial", Decimal("10000"), Decimal("10000")),
        ("fee", Decimal("9419.42"), Decimal("9999.42")),
        ("fee", Decimal("7967.97"), Decimal("9997.97")),
        ("deposit", Decimal("8067.97"), Decimal("10117.97")),
        ("withdrawal", Decimal("8000"), Decimal("10100")),
    ]
    assert [(symbol, equity) for _, symbol, equity in _ticks(engine, sid)] == [
        ("BTCUSDT", Decimal("10017.97")), ("ETHUSDT", Decimal("10167.97"))]
    report = verify(engine)
    assert report.ok, report.sessions[0].problems


def test_a_tampered_row_is_named_with_the_close_of_every_pair_it_holds(engine: Engine) -> None:
    sid = _hold_btc_and_eth_marked_one_pair_at_a_time(engine)
    withdrawal = _rows(engine, sid)[-1][0]
    with write_transaction(engine) as db:
        db.execute(update(AccountBalance).where(AccountBalance.id == withdrawal).values(equity=Decimal("10101")))
    [account] = verify(engine).sessions
    assert (f"ledger row {withdrawal} (withdrawal): equity 10101.00 is not its cash plus its holdings at the closes "
            "BTCUSDT 60000.00, ETHUSDT 3000.00: 10100.00") in account.problems, account.problems


def test_a_tampered_tick_row_is_named_with_the_close_of_every_pair_it_holds(engine: Engine) -> None:
    sid = _hold_btc_and_eth_marked_one_pair_at_a_time(engine)
    deposit = _rows(engine, sid)[3][0]
    eth_tick = _ticks(engine, sid)[1][0]
    with write_transaction(engine) as db:
        db.execute(update(TickLog).where(TickLog.id == eth_tick).values(equity=Decimal("10168.97")))
    [account] = verify(engine).sessions
    # the units: 10,000 + the deposit's 100 / 1.001797 (the value per unit the BTC tick left, 10,017.97 / 10,000);
    # the value per unit and index: 10,167.97 / those units (18 places)
    units, value = "Decimal('10099.820622341652051264')", "Decimal('1.006747582972671396')"
    assert (f"tick row {eth_tick} (candle 2024-01-01 00:00): units, equity, value per unit and index ({units}, "
            f"Decimal('10168.97000000'), {value}, {value}) are not the ledger row {deposit}'s units with its cash and "
            f"holdings at the closes BTCUSDT 60000.00, ETHUSDT 3000.00: ({units}, Decimal('10167.97000000'), {value}, "
            f"{value})") in account.problems, account.problems


def test_a_tampered_row_before_any_candle_is_named_at_cost(engine: Engine) -> None:
    sid = _hold_btc_and_eth_marked_one_pair_at_a_time(engine)
    btc_fee = _rows(engine, sid)[1][0]
    with write_transaction(engine) as db:
        db.execute(update(AccountBalance).where(AccountBalance.id == btc_fee).values(equity=Decimal("10000.42")))
    [account] = verify(engine).sessions
    assert (f"ledger row {btc_fee} (fee): equity 10000.42 is not its cash plus its holdings at cost (no candle "
            "applied): 9999.42") in account.problems, account.problems


def test_a_ledger_that_does_not_open_with_its_starting_capital_is_named_on_its_first_row(engine: Engine) -> None:
    with write_transaction(engine) as db:
        session = ledger.start_session(db, strategy="a", symbol="BTCUSDT", timeframe="1h", exchange="x",
                                       mode="paper", initial_balance=Decimal(1000))
        [first] = db.execute(select(AccountBalance.id).where(AccountBalance.session_id == session.id)).scalars()
        db.execute(update(AccountBalance).where(AccountBalance.id == first).values(kind="deposit"))
    [account] = verify(engine).sessions
    assert (f"ledger row {first} (deposit): the first row is not the starting capital (initial, reset or "
            "recovery)") in account.problems, account.problems


def test_a_row_of_a_kind_the_ledger_does_not_know_is_reported_not_a_crash(engine: Engine) -> None:
    """A restored dump without the CHECK constraints (or an edited schema) can hold a kind the ledger never writes:
    verify names it (no kind's references fit it) rather than failing on it."""
    with write_transaction(engine) as db:
        session = ledger.start_session(db, strategy="a", symbol="BTCUSDT", timeframe="1h", exchange="x",
                                       mode="paper", initial_balance=Decimal(1000))
        deposit = ledger.record_deposit(db, session, Decimal(10), reason="owner", actor=OWNER).id
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        else:
            conn.exec_driver_sql("ALTER TABLE account_balances DROP CONSTRAINT ck_account_balances_kind")
        conn.execute(update(AccountBalance).where(AccountBalance.id == deposit).values(kind="bonus"))
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = OFF")
    [account] = verify(engine).sessions
    assert f"ledger row {deposit} (bonus): reference None does not belong to a bonus row" in account.problems, (
        account.problems)
