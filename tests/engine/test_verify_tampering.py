"""`atb db verify` catches every tampering: each money column of each table, changed by hand one at a time, is
reported with the account, the row and the rule it breaks; the untouched ledger verifies.

The account behind it trades for real through the tick (an entry closed at its target, an entry still open),
takes a deposit and a withdrawal between candles, and switches strategy, so every kind of row is there.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from engine_testing import HOUR, T0, FakeExchange, ScriptedStrategy, candle
from sqlalchemy import Engine, select, update

from chalicelib.balances import change_balance
from chalicelib.bot.sessions import open_session, switch_strategy
from chalicelib.bot.tick import TickSettings, fixed_clock, tick_session
from chalicelib.bots import BotSpec
from chalicelib.cli import main
from chalicelib.db.models import AccountBalance, Position, TickLog, Trade, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.money import money_text
from chalicelib.trading.broker import BrokerConfig
from chalicelib.trading.strategies import EnterLong
from chalicelib.verify import verify

OWNER = Actor("owner")
MONEY = Decimal("1.00")
FINE = Decimal("0.001")  # units, values per unit, quantities


def _trade_a_while(engine: Engine) -> int:
    spec = BotSpec(strategy="scripted", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=Decimal(1000), start_cursor=T0).session_id
    candles = [candle(1, "100"), candle(2, "104"), candle(3, "110", high="121"), candle(4, "108"),
               candle(5, "109"), candle(6, "111"), candle(7, "112")]
    strategy = ScriptedStrategy(script={
        T0 + HOUR: EnterLong(stop_loss=Decimal(95), take_profit=Decimal(120)),
        T0 + HOUR * 5: EnterLong(stop_loss=Decimal(100), take_profit=Decimal(130)),
    })
    feed = FakeExchange(candles)
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy)
    change_balance("deposit", Decimal(500), reason="top up", actor=OWNER, session_id=sid, engine=engine)
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 6), strategy=strategy)
    change_balance("withdraw", Decimal("120.5"), reason="rent", actor=OWNER, session_id=sid, engine=engine)
    strategy.name = "ma_crossover"
    switch_strategy(engine, sid, "ma_crossover", actor=OWNER)
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 8), strategy=strategy)
    return sid


def _ids(engine: Engine) -> dict[str, Any]:
    with read_transaction(engine) as db:
        rows = list(db.execute(select(AccountBalance).order_by(AccountBalance.id)).scalars())
        positions = list(db.execute(select(Position).order_by(Position.id)).scalars())
        ticks = list(db.execute(select(TickLog).order_by(TickLog.candle_time)).scalars())
        [trade] = list(db.execute(select(Trade)).scalars())
    held = [t for t in ticks if t.market_time and any(p.status == "open" for p in positions)]
    return {
        "rows": {
            "first": rows[0].id,
            "entry fee": next(r.id for r in rows if r.reference and r.reference.endswith(":open")),
            "trade P&L": next(r.id for r in rows if r.kind == "trade_pnl"),
            "deposit": next(r.id for r in rows if r.kind == "deposit"),
            "last": rows[-1].id,
        },
        "ticks": {"first": ticks[0].id, "holding": held[-1].id},
        "closed": next(p.id for p in positions if p.status == "closed"),
        "open": next(p.id for p in positions if p.status == "open"),
        "trade": trade.id,
    }


LEDGER_COLUMNS = ("delta", "total_balance", "available_balance", "reserved_balance", "equity", "units", "unit_value",
                  "performance_index")
TICK_COLUMNS = ("close_price", "equity", "units", "unit_value", "performance_index")
POSITION_COLUMNS = ("entry_price", "quantity", "cost", "fees")
CLOSED_COLUMNS = ("exit_price", "realized_pnl")
TRADE_COLUMNS = ("entry_price", "exit_price", "quantity", "realized_pnl", "fees")
SESSION_COLUMNS = ("initial_balance", "total_balance", "available_balance", "reserved_balance", "units", "unit_value",
                   "peak_unit_value", "series_base", "net_contributions")
FINE_COLUMNS = {"units", "unit_value", "performance_index", "peak_unit_value", "series_base", "quantity"}


def _cases() -> list[tuple[str, str, str]]:
    cases = [("ledger", which, col) for which in ("first", "entry fee", "trade P&L", "deposit", "last")
             for col in LEDGER_COLUMNS]
    cases += [("tick", which, col) for which in ("first", "holding") for col in TICK_COLUMNS]
    cases += [("position", which, col) for which in ("open", "closed") for col in POSITION_COLUMNS]
    cases += [("position", "closed", col) for col in CLOSED_COLUMNS]
    cases += [("trade", "trade", col) for col in TRADE_COLUMNS]
    cases += [("session", "session", col) for col in SESSION_COLUMNS]
    return cases


def _tamper(engine: Engine, sid: int, ids: dict[str, Any], table: str, which: str, column: str) -> str:
    """Add a little to one value by hand; return how verify must name the place."""
    model, rid, name = {
        "ledger": (AccountBalance, ids["rows"].get(which), "ledger row"),
        "tick": (TickLog, ids["ticks"].get(which), "tick row"),
        "position": (Position, ids.get(which), "position"),
        "trade": (Trade, ids["trade"], "trade"),
        "session": (TradingSession, sid, "cached"),
    }[table]
    bump = FINE if column in FINE_COLUMNS else MONEY
    with write_transaction(engine) as db:
        value = db.execute(select(getattr(model, column)).where(model.id == rid)).scalar_one()
        db.execute(update(model).where(model.id == rid).values({column: value + bump}))
    return name if table == "session" else f"{name} {rid}"


@pytest.mark.parametrize(("table", "which", "column"), _cases())
def test_verify_names_the_account_row_and_rule_for_every_tampered_money_column(engine, table, which, column):
    sid = _trade_a_while(engine)
    report = verify(engine)
    assert report.ok, report.sessions[0].problems  # the untouched ledger adds up
    ids = _ids(engine)
    place = _tamper(engine, sid, ids, table, which, column)
    report = verify(engine)
    [account] = report.sessions
    assert account.session_id == sid and not account.ok
    assert any(place in problem for problem in account.problems), (place, account.problems)
    # each problem is a sentence that says what is wrong
    assert all(isinstance(p, str) and not p.endswith(": None") for p in account.problems), account.problems

    result = CliRunner().invoke(main, ["db", "verify"])
    assert result.exit_code == 1 and f"session #{sid} " in result.stdout and "FAILED" in result.stdout


def test_a_fee_relabelled_as_a_deposit_is_caught(engine):
    sid = _trade_a_while(engine)
    fee = _ids(engine)["rows"]["entry fee"]
    with write_transaction(engine) as db:
        db.execute(update(AccountBalance).where(AccountBalance.id == fee).values(kind="deposit"))
    [account] = verify(engine).sessions
    assert any(f"ledger row {fee} (deposit): reference" in p for p in account.problems), account.problems
    assert sid == account.session_id


def test_a_tampered_first_row_is_blamed_on_the_first_row(engine):
    _trade_a_while(engine)
    first = _ids(engine)["rows"]["first"]
    with write_transaction(engine) as db:
        db.execute(update(AccountBalance).where(AccountBalance.id == first).values(
            delta=Decimal(1100), total_balance=Decimal(1100), available_balance=Decimal(1100)))
    [account] = verify(engine).sessions
    assert account.problems[0].startswith(f"ledger row {first} (initial)"), account.problems


def _trade_from(engine: Engine, balance: str, candles: list[Any] | None = None,
                settings: TickSettings | None = None) -> int:
    """An account of ``balance`` that buys on the first candle (stop 50, target 200) and holds through two price
    moves (or ``candles``)."""
    spec = BotSpec(strategy="scripted", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=Decimal(balance), start_cursor=T0).session_id
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(50), take_profit=Decimal(200))})
    feed = FakeExchange(candles or [candle(1, "100"), candle(2, "104"), candle(3, "97")])
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy, settings=settings)
    return sid


def test_the_ticks_of_a_one_dollar_account_verify_with_its_value_per_unit_moving(engine):
    sid = _trade_from(engine, "1")  # one unit: each candle's value per unit is its equity
    with read_transaction(engine) as db:
        ticks = list(db.execute(select(TickLog).where(TickLog.session_id == sid).order_by(TickLog.candle_time))
                     .scalars())
    assert [t.units for t in ticks] == [1, 1, 1]
    assert len({t.unit_value for t in ticks}) == 3  # the position's mark moves it
    # a deposit into the one unit buys units at that value per unit (it does not start a new series)
    change_balance("deposit", Decimal(10), reason="top up", actor=OWNER, session_id=sid, engine=engine)
    report = verify(engine)
    assert report.ok, report.sessions[0].problems


def test_the_ticks_of_an_account_with_no_money_verify(engine):
    sid = _trade_from(engine, "0")  # no units: the value per unit stays where it was
    with read_transaction(engine) as db:
        ticks = list(db.execute(select(TickLog).where(TickLog.session_id == sid)).scalars())
    assert [(t.units, t.equity, t.unit_value) for t in ticks] == [(0, 0, 1)] * 3
    report = verify(engine)
    assert report.ok, report.sessions[0].problems


def test_a_tick_row_dated_before_the_accounts_first_ledger_row_is_reported(engine):
    _trade_a_while(engine)
    first = _ids(engine)["ticks"]["first"]
    with write_transaction(engine) as db:  # the tick claims the ledger had no row yet when it ran
        db.execute(update(TickLog).where(TickLog.id == first).values(ledger_version=0))
    [account] = verify(engine).sessions
    assert (f"tick row {first} (candle 2024-01-01 01:00): a candle was applied before the account's first ledger "
            "row") in account.problems, account.problems


def test_a_closed_trades_rows_are_dated_by_the_candle_that_closed_it(engine):
    _trade_from(engine, "1000", candles=[candle(1, "100"), candle(2, "104"), candle(3, "110", high="210")])
    with read_transaction(engine) as db:
        [trade] = list(db.execute(select(Trade)).scalars())
        closing = list(db.execute(select(AccountBalance).where(AccountBalance.reference.like(
            f"trade:{trade.position_id}:%")).order_by(AccountBalance.id)).scalars())
    # the take profit at the third candle, not the mark of the candle before it (the account's market time then)
    assert trade.market_time == T0 + HOUR * 4
    assert [(r.kind, r.market_time) for r in closing] == [("fee", T0 + HOUR * 4), ("trade_pnl", T0 + HOUR * 4)]
    report = verify(engine)
    assert report.ok, report.sessions[0].problems


RELABELLED = [  # (the row's kind, relabelled as, its amount made, what verify says about the amount)
    ("withdrawal", "deposit", None, "a deposit row cannot move -120.50"),
    ("strategy_switch", "deposit", None, "a deposit row cannot move 0.00"),
    ("deposit", "withdrawal", None, "a withdrawal row cannot move 500.00"),
    ("strategy_switch", "withdrawal", None, "a withdrawal row cannot move 0.00"),
    ("deposit", "reopened", None, "a reopened row cannot move 500.00"),
    ("trade_pnl", "fee", None, "a fee row cannot move 19.94002999"),
    ("trade_pnl", "fee", Decimal("0.5"), "a fee row cannot move 0.50"),
]


@pytest.mark.parametrize(("kind", "relabel", "delta", "message"), RELABELLED)
def test_a_row_relabelled_as_a_kind_of_the_opposite_sign_is_caught(engine, kind, relabel, delta, message):
    _trade_a_while(engine)
    with write_transaction(engine) as db:
        [rid] = db.execute(select(AccountBalance.id).where(AccountBalance.kind == kind)).scalars()
        values = {"kind": relabel} | ({"delta": delta} if delta is not None else {})
        db.execute(update(AccountBalance).where(AccountBalance.id == rid).values(values))
    [account] = verify(engine).sessions
    assert f"ledger row {rid} ({relabel}): {message}" in account.problems, account.problems


def test_a_fee_free_brokers_trades_verify_with_fee_rows_of_zero(engine):
    free = TickSettings(broker=BrokerConfig(fee_rate=Decimal(0)))
    sid = _trade_from(engine, "1000", candles=[candle(1, "100"), candle(2, "104"), candle(3, "110", high="210")],
                      settings=free)
    with read_transaction(engine) as db:
        fees = list(db.execute(select(AccountBalance.delta).where(AccountBalance.session_id == sid,
                                                                  AccountBalance.kind == "fee")).scalars())
    assert fees == [0, 0]  # the entry and the exit, each charging nothing
    report = verify(engine)
    assert report.ok, report.sessions[0].problems


def test_verify_says_which_balance_rule_and_which_price_a_tampered_row_breaks(engine):
    _trade_a_while(engine)
    ids = _ids(engine)["rows"]
    with write_transaction(engine) as db:
        fee = db.get(AccountBalance, ids["entry fee"])
        last = db.get(AccountBalance, ids["last"])
        assert fee is not None and last is not None
        fee.equity += 1  # its market time has a candle: the rule names the close it was marked at
        last.available_balance -= 1
        fee_id, fee_equity, fee_expected, last_id, last_kind = (fee.id, fee.equity, fee.equity - 1, last.id,
                                                                last.kind)
        deposit = db.get(AccountBalance, ids["deposit"])
        assert deposit is not None
        deposit.equity += 1  # the units it issued no longer value it
    [account] = verify(engine).sessions
    assert (f"ledger row {ids['deposit']} (deposit): units × value per unit do not reproduce the row's equity"
            in account.problems), account.problems
    assert (f"ledger row {fee_id} (fee): equity {money_text(fee_equity)} is not its cash plus its holdings at the "
            f"closes BTCUSDT 100.00: {money_text(fee_expected)}") in account.problems, account.problems
    assert f"ledger row {last_id} ({last_kind}): available ≠ total − reserved" in account.problems, account.problems


def test_verify_catches_a_negative_balance_written_past_the_databases_constraints(engine):
    """A restored dump without the CHECK constraints (or an edited schema) can hold what the ledger never writes."""
    _trade_a_while(engine)
    last = _ids(engine)["rows"]["last"]
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        else:
            conn.exec_driver_sql("ALTER TABLE account_balances "
                                 "DROP CONSTRAINT ck_account_balances_available_not_negative")
        total = conn.execute(select(AccountBalance.total_balance).where(AccountBalance.id == last)).scalar_one()
        conn.execute(update(AccountBalance).where(AccountBalance.id == last).values(
            reserved_balance=total + 1, available_balance=Decimal(-1)))
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = OFF")
    [account] = verify(engine).sessions
    assert any(p.startswith(f"ledger row {last} (") and p.endswith("): available or reserved balance is negative")
               for p in account.problems), account.problems


def test_a_tampered_cached_mark_is_compared_with_the_newest_applied_candles_close(engine):
    from chalicelib.valuation import Mark

    sid = _trade_a_while(engine)
    with write_transaction(engine) as db:
        session = db.get(TradingSession, sid)
        assert session is not None
        [newest] = db.execute(select(TickLog).where(TickLog.candle_time == session.candle_cursor)).scalars()
        [(symbol, kept)] = session.marks.items()
        mark = kept.close + 1
        session.marks = {symbol: Mark(mark, kept.cursor)}
        tick_id, close = newest.id, newest.close_price
    [account] = verify(engine).sessions
    assert (f"cached mark of {symbol} {mark} ≠ the close of its newest applied candle, tick row {tick_id}: "
            f"{money_text(close)}" in account.problems), account.problems


def test_a_tick_row_whose_equity_was_erased_is_reported_not_skipped(engine):
    """Only legacy tick rows (from before migration 0003: no equity and no ledger version) are skipped."""
    _trade_a_while(engine)
    holding = _ids(engine)["ticks"]["holding"]
    with write_transaction(engine) as db:
        db.execute(update(TickLog).where(TickLog.id == holding).values(equity=None))
    [account] = verify(engine).sessions
    assert any(p.startswith(f"tick row {holding} (candle ") for p in account.problems), account.problems
