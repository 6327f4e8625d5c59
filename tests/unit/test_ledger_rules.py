"""The ledger's rules, checked without a database (``chalicelib.ledger.rules``): what a change may do to an
account, what it leaves behind, and why a refused change is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from chalicelib import accounting
from chalicelib.db.models import TradingSession
from chalicelib.ledger import (
    KINDS,
    SYSTEM,
    Actor,
    InsufficientFunds,
    InvalidChange,
    Kind,
    check,
    position_reference,
    request_reference,
    trade_reference,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def account(total: str = "1000", reserved: str = "0") -> TradingSession:
    """An account as its session row caches it: ``total`` of which ``reserved`` is held by open positions."""
    total_d, reserved_d = Decimal(total), Decimal(reserved)
    return TradingSession(id=7, base_currency="USD", total_balance=total_d, available_balance=total_d - reserved_d,
                          reserved_balance=reserved_d, units=total_d, unit_value=accounting.ONE,
                          peak_unit_value=accounting.ONE, series_base=accounting.ONE, net_contributions=total_d,
                          version=3, market_time=NOW, marks={})


def change(session: TradingSession, kind: str, delta: str, **kw: object) -> object:
    args: dict[str, object] = {"kind": kind, "delta": Decimal(delta), "reason": "why", "actor": SYSTEM,
                               "reserved_delta": Decimal(0), "reference": None, "held": {}, "when": NOW,
                               "positions_value": None, "market_time": None}
    args.update(kw)
    return check(session, **args)  # type: ignore[arg-type]


def test_a_deposit_issues_units_at_the_value_per_unit_and_bumps_the_version() -> None:
    posting = change(account(), Kind.DEPOSIT, "500")
    row, cached = posting.row, posting.session  # type: ignore[attr-defined]
    assert (row["total_balance"], row["available_balance"], row["kind"]) == (Decimal(1500), Decimal(1500), "deposit")
    assert row["units"] == Decimal(1500) and row["unit_value"] == accounting.ONE
    assert cached["net_contributions"] == Decimal(1500) and cached["version"] == 4
    assert row["asset_balances"] == {"USD": "1500.00"}


@pytest.mark.parametrize(("kind", "delta", "extra", "error", "message"), [
    (Kind.WITHDRAWAL, "-1000.01", {}, InsufficientFunds, "available balance would be -\\$0.01"),
    (Kind.FEE, "-1", {"reserved_delta": Decimal(1000)}, InsufficientFunds, "held by open positions"),
    ("bonus", "1", {}, InvalidChange, "unknown ledger kind 'bonus'"),
    (Kind.STRATEGY_SWITCH, "1", {}, InvalidChange, "a strategy_switch row moves no money"),
    (Kind.DEPOSIT, "0.000000001", {}, InvalidChange, "at most 8 decimal places"),
    (Kind.DEPOSIT, "1", {"reason": "  "}, InvalidChange, "reason must not be empty"),
    (Kind.DEPOSIT, "1", {"reason": "x" * 201}, InvalidChange, "reason is longer than 200 characters"),
    (Kind.DEPOSIT, "1", {"actor": Actor(" ")}, InvalidChange, "updated_by must not be empty"),
    (Kind.FEE, "0", {"reserved_delta": Decimal(-1)}, InvalidChange, "reserved balance would be negative"),
])
def test_a_refused_change_names_why(kind: str, delta: str, extra: dict[str, object], error: type[Exception],
                                    message: str) -> None:
    session = account()
    before = (session.total_balance, session.available_balance, session.version)
    with pytest.raises(error, match=message):
        change(session, kind, delta, **extra)
    assert (session.total_balance, session.available_balance, session.version) == before  # nothing touched


def test_the_vocabulary_is_the_database_constraint_and_the_references() -> None:
    from chalicelib.db.models import AccountBalance

    assert tuple(Kind) == KINDS
    constraint = next(c for c in AccountBalance.__table__.constraints if str(c.name).endswith("kind"))  # type: ignore[attr-defined]
    assert all(f"'{k}'" in str(constraint.sqltext) for k in KINDS)
    assert (position_reference(3), trade_reference(3, "pnl"), request_reference("k")) == \
        ("position:3:open", "trade:3:pnl", "request:k")


def test_a_round_trips_ledger_rows_say_what_they_are_and_which_trade() -> None:
    """The rows a trade writes, as the ledger listing shows them: the entry fee holds the cost in reserve; the exit
    fee releases it and names why the trade closed; the P&L row names it too; both closing rows cite the trade."""
    from chalicelib.ledger.rules import position_closed, position_opened

    assert position_opened(Decimal("200"), Decimal("0.2")) == {
        "kind": "fee", "delta": Decimal("-0.2"), "reserved_delta": Decimal("200"), "reason": "trade_entry_fee"}
    assert position_closed(5, Decimal("-10.1"), Decimal("0.19"), Decimal("200"), "stop_loss") == [
        {"kind": "fee", "delta": Decimal("-0.19"), "reserved_delta": Decimal("-200"),
         "reason": "trade_exit_fee_stop_loss", "reference": "trade:5:exit_fee"},
        {"kind": "trade_pnl", "delta": Decimal("-10.1"), "reason": "trade_pnl_stop_loss", "reference": "trade:5:pnl"},
    ]


def test_withdrawing_every_available_dollar_is_allowed_and_leaves_zero() -> None:
    posting = change(account("1000", "300"), Kind.WITHDRAWAL, "-700")
    assert (posting.row["available_balance"], posting.row["total_balance"]) == (0, 300)  # type: ignore[attr-defined]


def test_a_strategy_switch_is_written_and_moves_no_money_nor_any_reserve() -> None:
    posting = change(account(), Kind.STRATEGY_SWITCH, "0")
    assert (posting.row["kind"], posting.row["available_balance"]) == ("strategy_switch", 1000)  # type: ignore[attr-defined]
    with pytest.raises(InvalidChange, match=r"^a strategy_switch row moves no money$"):
        change(account(), Kind.STRATEGY_SWITCH, "0", reserved_delta=Decimal(1))


def test_nine_decimals_are_refused_with_the_rule_named() -> None:
    with pytest.raises(InvalidChange, match=r"^amounts carry at most 8 decimal places$"):
        change(account(), Kind.DEPOSIT, "1.000000001")


def test_the_row_keeps_who_made_it_and_their_label_trimmed_to_a_hundred_characters() -> None:
    labelled = change(account(), Kind.DEPOSIT, "1", actor=Actor(" alice ", "  " + "L" * 101 + " "))
    assert (labelled.row["updated_by"], labelled.row["updated_by_label"]) == ("alice", "L" * 100)  # type: ignore[attr-defined]
    blank = change(account(), Kind.DEPOSIT, "1", actor=Actor("alice", "   "))
    assert blank.row["updated_by_label"] is None  # type: ignore[attr-defined]


def test_held_assets_are_written_in_plain_decimals_never_exponents() -> None:
    held = {"BTC": Decimal("1000.000"), "ETH": Decimal("0.00000010"), "SOL": Decimal(0)}
    posting = change(account(), Kind.DEPOSIT, "1", held=held)
    assert posting.row["asset_balances"] == {"USD": "1001.00", "BTC": "1000", "ETH": "0.0000001"}  # type: ignore[attr-defined]


def test_a_change_without_a_market_time_is_dated_at_the_accounts_market_time_not_the_wall_clock() -> None:
    """A deposit sent by hand belongs where the account is in the market (the close of its last candle), so a replay
    and the chart put it between the same candles; the wall clock is used only for an account with no market time."""
    later = datetime(2024, 1, 3, tzinfo=UTC)
    assert change(account(), Kind.DEPOSIT, "10", when=later).row["market_time"] == NOW  # type: ignore[attr-defined]
    given = datetime(2024, 1, 2, tzinfo=UTC)
    assert change(account(), Kind.FEE, "-1", when=later,  # type: ignore[attr-defined]
                  market_time=given).row["market_time"] == given
    fresh = account()
    fresh.market_time = None
    assert change(fresh, Kind.DEPOSIT, "10", when=later).row["market_time"] == later  # type: ignore[attr-defined]


def test_quantities_of_one_asset_held_in_several_positions_add_up() -> None:
    """Two positions in BTC (two BTC pairs, or two entries on one pair) hold their sum, the row's BTC balance."""
    from chalicelib.db.models import Position
    from chalicelib.ledger import held_quantities

    positions = [Position(symbol="BTCUSDT", quantity=Decimal("0.01")), Position(symbol="ETHUSDT", quantity=Decimal(2)),
                 Position(symbol="BTCUSDC", quantity=Decimal("0.002"))]
    assert held_quantities(positions) == {"BTC": Decimal("0.012"), "ETH": Decimal(2)}


def test_equity_is_cash_plus_positions_at_the_closes_given_not_the_accounts_last_marks() -> None:
    """A tick values the account at the candle it is applying, before the account's cached marks move: 0.01 BTC
    bought for $500 on a $1,000 account, marked by the account at 50,000 but valued here at 60,000: 500 + 600."""
    from chalicelib.db.models import Position
    from chalicelib.ledger import equity_of
    from chalicelib.valuation import Mark

    session = account("1000", reserved="500")
    session.marks = {"BTCUSDT": Mark(Decimal(50000), NOW)}
    held = [Position(symbol="BTCUSDT", side="long", quantity=Decimal("0.01"), cost=Decimal(500))]
    assert equity_of(session, held) == Decimal("1000.00")
    assert equity_of(session, held, {"BTCUSDT": Mark(Decimal(60000), NOW)}) == Decimal("1100.00")
