"""`atb db verify` re-derives each ledger row's units, value per unit and performance index from the row before
(``docs/accounting.md``): money into an empty or wiped-out account starts a new series, a flow is priced at the
value per unit, trading moves the value, an event moves nothing. Each account here is worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import ledger_testing
from sqlalchemy import Engine, select, update

from chalicelib import ledger
from chalicelib.balances import change_balance
from chalicelib.db.models import AccountBalance, Position
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify

OWNER = Actor("owner")
WHEN = datetime(2024, 1, 1, tzinfo=UTC)


def _start(engine: Engine, amount: str) -> int:
    with write_transaction(engine) as db:
        return ledger.start_session(db, strategy="ml_basic", symbol="BTCUSDT", timeframe="1h", exchange="binance",
                                    mode="paper", initial_balance=Decimal(amount)).id


def _buy(engine: Engine, sid: int, quantity: str, price: str, fee: str) -> int:
    """A long of ``quantity`` BTC at ``price`` (its cost reserved) and its entry fee: one fee row."""
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        return ledger_testing.buy(db, session, quantity=quantity, price=price, fee=fee, when=WHEN).id


def _sell(engine: Engine, sid: int, position_id: int, price: str, fee: str) -> None:
    """The position sold at ``price`` with an exit fee: its fee and trade_pnl rows, and its trade."""
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        position = db.get(Position, position_id)
        assert position is not None
        ledger_testing.sell(db, session, position, price=price, fee=fee, when=WHEN)


def _change(engine: Engine, sid: int, op: str, amount: str) -> None:
    change_balance(op, Decimal(amount), reason=op, actor=OWNER, session_id=sid, engine=engine)  # type: ignore[arg-type]


def _rows(engine: Engine, sid: int) -> list[AccountBalance]:
    with read_transaction(engine) as db:
        return list(db.execute(select(AccountBalance).where(AccountBalance.session_id == sid)
                               .order_by(AccountBalance.id)).scalars())


def _tamper(engine: Engine, row_id: int, **values: Decimal) -> None:
    with write_transaction(engine) as db:
        db.execute(update(AccountBalance).where(AccountBalance.id == row_id).values(values))


def _problems(engine: Engine) -> list[str]:
    [account] = verify(engine).sessions
    return account.problems


def _emptied_after_a_loss(engine: Engine) -> int:
    """$1,000 buys 0.01 BTC at 40,000 (fee 0.40) and sells it there (fee 0.40): equity 999.20 on 1,000 units,
    a value per unit of 0.9992; then the owner sets the balance to $0, which redeems every unit at 0.9992."""
    sid = _start(engine, "1000")
    _sell(engine, sid, _buy(engine, sid, "0.01", "40000", "0.4"), "40000", "0.4")
    _change(engine, sid, "set", "0")
    last = _rows(engine, sid)[-1]
    assert (last.kind, last.equity, last.units, last.unit_value, last.performance_index) == (
        "manual_set", 0, 0, Decimal("0.9992"), Decimal("0.9992"))
    return sid


def test_a_deposit_of_one_dollar_into_an_emptied_account_starts_a_series_chained_to_the_old_index(engine):
    """Units 0 at a value per unit of 0.9992: the dollar is one unit at 1, and the index carries on at 0.9992 (the
    series base), not at 1 × 1."""
    sid = _emptied_after_a_loss(engine)
    _change(engine, sid, "deposit", "1")
    deposit = _rows(engine, sid)[-1]
    assert (deposit.units, deposit.unit_value, deposit.performance_index) == (1, 1, Decimal("0.9992"))
    assert _problems(engine) == []


def test_setting_an_emptied_account_to_zero_again_keeps_its_value_per_unit(engine):
    """A set to $0 of an account already at $0 moves nothing and starts no series: units 0, value 0.9992 kept."""
    sid = _emptied_after_a_loss(engine)
    _change(engine, sid, "set", "0")
    again = _rows(engine, sid)[-1]
    assert (again.delta, again.units, again.unit_value, again.performance_index) == (
        0, 0, Decimal("0.9992"), Decimal("0.9992"))
    assert _problems(engine) == []


def test_a_deposit_after_trading_wiped_the_account_out_starts_a_new_series(engine):
    """$100 buys 1 BTC at 99.90 (fee 0.10: no cash left) and sells it at 0.01 for a fee of 0.01 that eats the
    proceeds: equity 0 on 100 units, a value per unit of 0. The $50 deposit cannot be priced at 0: 50 new units at
    1, and the index carries on from 1 × 0 = 0."""
    sid = _start(engine, "100")
    _sell(engine, sid, _buy(engine, sid, "1", "99.9", "0.1"), "0.01", "0.01")
    wiped = _rows(engine, sid)[-1]
    assert (wiped.kind, wiped.delta, wiped.equity, wiped.units, wiped.unit_value) == (
        "trade_pnl", Decimal("-99.89"), 0, 100, 0)
    _change(engine, sid, "deposit", "50")
    deposit = _rows(engine, sid)[-1]
    assert (deposit.units, deposit.unit_value, deposit.performance_index) == (50, 1, 0)
    assert _problems(engine) == []


def test_an_event_after_a_deposit_keeps_the_value_per_unit_the_deposit_was_priced_at(engine):
    """$0.01 buys 0.0000001 BTC at 50,000 (cost 0.005, fee 0.0001): equity 0.0099 on 0.01 units, 0.99 a unit.
    $0.02 in buys 0.02 / 0.99 = 0.020202020202020202 units (rounded down from …0202…), 0.030202020202020202 in
    all, which 0.99 values at 0.02989999999999999998: the equity 0.0299 over them is 0.99 + 6.6e-19, that is
    0.990000000000000001, a quantum above the 0.99 the units were priced at. The strategy switch after it moves
    nothing, so its value per unit stays 0.99."""
    sid = _start(engine, "0.01")
    _buy(engine, sid, "0.0000001", "50000", "0.0001")
    _change(engine, sid, "deposit", "0.02")
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        ledger.record_event(db, session, "strategy_switch", reason="switch", actor=OWNER)
    switch = _rows(engine, sid)[-1]
    assert (switch.equity, switch.units, switch.unit_value) == (
        Decimal("0.0299"), Decimal("0.030202020202020202"), Decimal("0.99"))
    assert _problems(engine) == []


def test_a_deposit_priced_off_the_value_per_unit_names_the_equity_before_it(engine):
    """$1 (one unit at 1) takes a $10 deposit: 11 units at 1. Edited to 1.001 a unit, the one unit before it is worth
    1.001, not the $1.00 of equity before the deposit (11.00 − 10.00)."""
    sid = _start(engine, "1")
    _change(engine, sid, "deposit", "10")
    deposit = _rows(engine, sid)[-1]
    assert (deposit.units, deposit.unit_value, deposit.equity) == (11, 1, 11)
    _tamper(engine, deposit.id, unit_value=Decimal("1.001"))
    assert (f"ledger row {deposit.id} (deposit): the flow was priced at 1.001000000000000000 per unit, which does not "
            "value the 1.000000000000000000 units before it at the equity before it (1.00)") in _problems(engine)


def test_a_fee_row_of_a_one_unit_account_is_held_to_its_equity_over_its_units(engine):
    """$1 (one unit) buys 0.00001 BTC at 50,000 (cost 0.50, fee 0.01): equity 0.99 on 1 unit, 0.99 a unit. Edited
    to 0.991, the row is not what trading makes of the one unit: 0.99 / 1."""
    sid = _start(engine, "1")
    _buy(engine, sid, "0.00001", "50000", "0.01")
    fee = _rows(engine, sid)[-1]
    assert (fee.equity, fee.units, fee.unit_value) == (Decimal("0.99"), 1, Decimal("0.99"))
    _tamper(engine, fee.id, unit_value=Decimal("0.991"))
    assert (f"ledger row {fee.id} (fee): units 1.000000000000000000 × value per unit 0.991000000000000000 do not "
            "follow from the row before by the unit rules (expected 1.000000000000000000 × 0.990000000000000000)"
            ) in _problems(engine)


def test_a_deposit_whose_value_per_unit_was_zeroed_is_reported(engine):
    """$1,000 (1,000 units at 1) takes $10 at 1 a unit: 1,010 units. With its value per unit edited to 0 the 1,000
    units before it are worth nothing, not $1,000, and 1,010 units at 0 are not its $1,010 of equity."""
    sid = _start(engine, "1000")
    _change(engine, sid, "deposit", "10")
    deposit = _rows(engine, sid)[-1]
    _tamper(engine, deposit.id, unit_value=Decimal(0))
    problems = _problems(engine)
    assert (f"ledger row {deposit.id} (deposit): the flow was priced at 0E-18 per unit, which does not value the "
            "1000.000000000000000000 units before it at the equity before it (1000.00)") in problems, problems
    assert (f"ledger row {deposit.id} (deposit): units × value per unit do not reproduce the row's equity"
            in problems), problems


def test_a_trade_after_a_row_whose_units_were_zeroed_is_reported_against_no_units(engine):
    """The opening row of $1,000 with its units edited to 0: the entry fee after it (equity 999.60 on the 1,000
    units the ledger wrote) does not follow from no units, which trading cannot change."""
    sid = _start(engine, "1000")
    [first] = _rows(engine, sid)
    _tamper(engine, first.id, units=Decimal(0))
    _buy(engine, sid, "0.01", "40000", "0.4")
    fee = _rows(engine, sid)[-1]
    assert _problems(engine) == [
        f"ledger row {first.id} (initial): units 0E-18 × value per unit 1.000000000000000000 do not follow from the "
        "row before by the unit rules (expected 1000.000000000000000000 × 1)",
        f"ledger row {fee.id} (fee): units 1000.000000000000000000 × value per unit 0.999600000000000000 do not "
        "follow from the row before by the unit rules (expected 0E-18 × 0.999600000000000000)",
    ]


def test_withdrawing_everything_after_a_row_whose_units_were_zeroed_blames_only_that_row(engine):
    """The opening row of $1,000 with its units edited to 0, then all $1,000 withdrawn: no units are left either
    way, so only the edited row is reported (no unit was there to price the withdrawal at)."""
    sid = _start(engine, "1000")
    [first] = _rows(engine, sid)
    _tamper(engine, first.id, units=Decimal(0))
    _change(engine, sid, "withdraw", "1000")
    withdrawal = _rows(engine, sid)[-1]
    assert (withdrawal.units, withdrawal.equity) == (0, 0)
    assert _problems(engine) == [
        f"ledger row {first.id} (initial): units 0E-18 × value per unit 1.000000000000000000 do not follow from the "
        "row before by the unit rules (expected 1000.000000000000000000 × 1)"]
