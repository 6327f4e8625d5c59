"""Boundaries of the money rules, worked by hand: the places a one-character change (``<=`` → ``<``, a constant
nudged, a kind dropped) would change what a user is paid or charged and no broader test would notice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib import accounting, valuation
from chalicelib.accounting import EMPTY, UnitState
from chalicelib.money import MoneyError, format_usd, money_text, parse_money, quantize_money, quantize_quantity
from chalicelib.trading.broker import BrokerConfig, check_exit, exit_fill, market_buy, market_sell
from chalicelib.trading.candles import Candle
from chalicelib.trading.position import PositionView
from chalicelib.trading.risk import RiskConfig, Sizing, can_open, size_position
from chalicelib.valuation import Mark

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)
LONG = PositionView(entry_price=D(100), quantity=D(2), stop_loss=D(95), take_profit=D(110), opened_at=T0)


def bar(o: str, h: str, lo: str, c: str) -> Candle:
    return Candle(open_time=T0 + timedelta(hours=1), open=D(o), high=D(h), low=D(lo), close=D(c), volume=D(1))


# --- stops and targets touched exactly ------------------------------------------------------------------------


def test_a_candle_whose_low_touches_the_stop_exactly_fills_the_stop():
    signal = check_exit(LONG, bar("100", "101", "95", "99"))
    assert signal is not None and (signal.reason, signal.price, signal.gapped) == ("stop_loss", D(95), False)


def test_a_candle_whose_high_touches_the_target_exactly_fills_the_target():
    signal = check_exit(LONG, bar("100", "110", "99", "105"))
    assert signal is not None and (signal.reason, signal.price, signal.gapped) == ("take_profit", D(110), False)


def test_a_candle_opening_exactly_at_the_target_books_the_profit_even_if_it_dips_to_the_stop():
    signal = check_exit(LONG, bar("110", "111", "94", "96"))
    assert signal is not None and (signal.reason, signal.price) == ("take_profit", D(110))


def test_a_candle_opening_exactly_at_the_stop_fills_at_the_open():
    signal = check_exit(LONG, bar("95", "99", "90", "96"))
    assert signal is not None and (signal.reason, signal.price, signal.gapped) == ("stop_loss", D(95), True)


def test_a_candle_between_stop_and_target_changes_nothing():
    assert check_exit(LONG, bar("100", "109.99", "95.01", "100")) is None


# --- sizing ---------------------------------------------------------------------------------------------------


def test_a_five_cent_coin_is_sized_like_any_other():
    """Balance 1,000 at $0.05 with a stop at $0.045: position cap 100 / 0.05 = 2,000 coins; risk cap
    20 / 0.005 = 4,000; cash cap 1,000 / 0.05005 ≈ 19,980 → 2,000 coins."""
    sizing = size_position(D(1000), D(1000), D("0.05"), D("0.045"))
    assert (sizing.quantity, sizing.binding) == (D(2000), "position_cap")


def test_a_size_that_rounds_to_zero_is_no_trade():
    """A hundred-millionth of a dollar at 100,000: 10 % of it buys 1e-14 coins, below the 12 stored places."""
    sizing = size_position(D("0.00000001"), D("0.00000001"), D(100000), D(90000))
    assert (sizing.quantity, sizing.binding) == (D(0), "none")


def test_the_drawdown_limit_is_reached_exactly_at_twenty_percent_of_the_value_per_unit():
    assert can_open(D("0.800000000000000001"), D(1))
    assert not can_open(D("0.8"), D(1))


@pytest.mark.parametrize("name", ["max_position_fraction", "risk_per_trade", "max_drawdown"])
@pytest.mark.parametrize(("value", "ok"), [(D(0), False), (D("0.0001"), True), (D(1), True), (D("1.0001"), False),
                                            (D(-1), False), (D("NaN"), False)])
def test_risk_fractions_must_lie_in_zero_to_one(name, value, ok):
    if ok:
        assert getattr(RiskConfig(**{name: value}), name) == value
    else:
        with pytest.raises(ValueError, match=name):
            RiskConfig(**{name: value})


@pytest.mark.parametrize(("fee", "bps", "ok"), [(D(0), D(0), True), (D("0.999"), D(9999), True), (D(1), D(0), False),
                                                (D("-0.001"), D(0), False), (D(0), D(10000), False),
                                                (D(0), D(-1), False)])
def test_broker_costs_have_bounds(fee, bps, ok):
    if ok:
        assert BrokerConfig(fee_rate=fee, slippage_bps=bps).fee_rate == fee
    else:
        with pytest.raises(ValueError):
            BrokerConfig(fee_rate=fee, slippage_bps=bps)


# --- money ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "shown"), [
    ("0.05", "$0.05"), ("-0.05", "-$0.05"), ("0.005", "$0.00"), ("0.015", "$0.02"), ("-0.004", "$0.00"),
    ("1234.5", "$1,234.50"), ("-95249.5", "-$95,249.50"), ("1000000", "$1,000,000.00"),
])
def test_amounts_are_shown_with_two_decimals_a_sign_only_when_negative_and_half_even(amount, shown):
    assert format_usd(D(amount)) == shown


def test_money_text_keeps_eight_places_and_at_least_two():
    assert (money_text(D("5")), money_text(D("0.123456789")), money_text(D("-0.1"))) == ("5.00", "0.12345679", "-0.10")


def test_quantities_round_down_and_money_rounds_half_even():
    assert quantize_quantity(D("0.1234567890129")) == D("0.123456789012")
    assert quantize_money(D("0.000000025")) == D("0.00000002") and quantize_money(D("0.000000035")) == D("0.00000004")


@pytest.mark.parametrize("text", ["0.000000001", "abc", "NaN", "-Infinity", "", "1000000000001", "1e1000000"])
def test_an_amount_that_cannot_be_money_is_refused(text):
    with pytest.raises(MoneyError):
        parse_money(text)


def test_the_largest_amount_and_eight_places_are_accepted():
    assert parse_money("1000000000000") == D(1000000000000)
    assert parse_money("0.00000001") == D("0.00000001")


# --- units ----------------------------------------------------------------------------------------------------


def test_money_into_an_empty_account_starts_a_series_at_one_and_the_index_carries_on():
    state = UnitState(units=D(0), unit_value=D("1.2"), peak_unit_value=D("1.3"), series_base=D(1))
    after = accounting.after_flow(state, D(0), D(500))
    assert (after.units, after.unit_value, after.peak_unit_value) == (D(500), D(1), D(1))
    assert after.performance_index == D("1.2")  # continuous with where the last series ended


def test_a_withdrawal_of_everything_redeems_every_unit_and_keeps_the_value():
    state = accounting.after_trading(accounting.new_series(EMPTY, D(1000)), D(1100))
    emptied = accounting.after_flow(state, D(1100), D(-1100))
    assert (emptied.units, emptied.unit_value, emptied.performance_index) == (D(0), D("1.1"), D("1.1"))
    with pytest.raises(ValueError):
        accounting.after_flow(state, D(1100), D("-1100.01"))


def test_a_deposit_at_a_value_per_unit_issues_units_at_that_value():
    state = accounting.after_trading(accounting.new_series(EMPTY, D(1000)), D(1250))  # V = 1.25
    after = accounting.after_flow(state, D(1250), D(500))
    assert (after.units, after.unit_value, after.peak_unit_value) == (D(1400), D("1.25"), D("1.25"))
    assert accounting.units_reproduce_equity(after, D(1750))


def test_the_time_weighted_return_and_the_percent_figures():
    assert accounting.time_weighted_return(D("1.1"), D("1.045")) == D("-0.05")
    assert accounting.time_weighted_return(D(0), D(1)) is None
    assert accounting.percent(D("0.004749")) == D("0.47") and accounting.percent(D("0.005")) == D("0.50")
    assert accounting.percent(None) is None
    assert accounting.drawdown(D("1.045"), D("1.1")) == D("0.05") and accounting.drawdown(D(2), D(1)) == 0


def test_units_below_one_and_values_below_one_follow_the_same_rules():
    """An account can hold less than one unit, and a unit can be worth less than a dollar."""
    half = UnitState(units=D("0.5"), unit_value=D("0.9"), peak_unit_value=D(1), series_base=D(1))
    traded = accounting.after_trading(half, D("0.6"))
    assert traded.unit_value == D("1.2") and traded.peak_unit_value == D("1.2")
    deposited = accounting.after_flow(half, D("0.45"), D("0.9"))  # 0.9 at 0.9 a unit: one more unit
    assert (deposited.units, deposited.unit_value) == (D("1.5"), D("0.9"))
    left = accounting.after_flow(UnitState(D(10), D("0.5"), D(1), D(1)), D(5), D(-4))  # leaves exactly $1
    assert (left.units, left.unit_value) == (D(2), D("0.5"))


def test_a_new_series_may_start_empty_or_below_a_dollar_but_not_below_zero():
    assert accounting.new_series(EMPTY, D(0)).units == 0
    assert accounting.new_series(EMPTY, D("0.5")).units == D("0.5")
    with pytest.raises(ValueError, match="negative"):
        accounting.new_series(EMPTY, D("-0.01"))
    emptied = UnitState(units=D(0), unit_value=D("1.2"), peak_unit_value=D("1.3"), series_base=D(1))
    assert accounting.after_flow(emptied, D(0), D(0)) == emptied  # nothing in, nothing out: nothing starts


def test_units_reproduce_equity_only_when_they_do():
    assert accounting.units_reproduce_equity(EMPTY, D(0)) and not accounting.units_reproduce_equity(EMPTY, D(1))
    one = UnitState(units=D(1), unit_value=D(1), peak_unit_value=D(1), series_base=D(1))
    assert accounting.units_reproduce_equity(one, D(1)) and not accounting.units_reproduce_equity(one, D(0))


def test_the_unit_arithmetic_keeps_eighteen_places_on_a_trillion():
    assert accounting.quantize_units(D("123456789012.1234567890123456789")) == D("123456789012.123456789012345679")
    assert accounting.time_weighted_return(D("0.5"), D(1)) == D(1)
    assert accounting.drawdown(D(1), D(0)) == 0


@pytest.mark.parametrize(("value", "says"), [
    (1.5, "deposit must be given as a decimal number or text, not a float"),
    ("   ", "deposit is empty"),
    ("9" * 101, "deposit is not a number of a sensible size (101 characters)"),
    ("abc", "deposit is not a number: abc"),
    (object(), "deposit must be a number, got object"),
    ("NaN", "deposit must be a finite number"),
    ("1e13", "deposit is too large (at most 1,000,000,000,000)"),
    (2**70, "deposit is too large"),
    ("0.000000001", "deposit has more than 8 decimal places: 0.000000001"),
])
def test_a_refused_amount_says_which_field_and_why(value, says):
    with pytest.raises(MoneyError) as refused:
        parse_money(value, field="deposit")
    assert says in str(refused.value)


@pytest.mark.parametrize(("value", "amount"), [(D("5.5"), D("5.5")), ("0E-50", D(0)), (0, D(0)), ("-0", D(0)),
                                               (2**39, D(2**39)), ("1.10000000000", D("1.1"))])
def test_an_amount_in_any_accepted_form_is_kept_exactly(value, amount):
    parsed = parse_money(value)
    assert parsed == amount and not parsed.is_signed()


# --- boundaries a mutation run showed loose (docs/mutation.md) ------------------------------------------------


def test_a_flow_that_would_take_equity_below_zero_says_so():
    state = accounting.new_series(EMPTY, D(100))
    with pytest.raises(ValueError, match=r"^a flow cannot take equity below zero$"):
        accounting.after_flow(state, D(100), D("-100.00000001"))


def test_money_into_an_account_trading_wiped_out_starts_a_new_series():
    """Units left but each worth nothing (V = 0): a $500 deposit cannot be priced at V, so it starts a series at
    V = 1 with 500 units, and the performance index carries on from zero."""
    wiped = UnitState(units=D(10), unit_value=D(0), peak_unit_value=D("1.2"), series_base=D(1))
    after = accounting.after_flow(wiped, D(0), D(500))
    assert (after.units, after.unit_value, after.peak_unit_value) == (D(500), D(1), D(1))
    assert after.performance_index == 0
    set_to_zero = accounting.after_flow(wiped, D(0), D(0))
    assert (set_to_zero.units, set_to_zero.unit_value) == (D(0), D(0))  # no worthless units are kept


def test_fifty_cents_into_an_empty_account_starts_a_series_of_half_a_unit():
    after = accounting.after_flow(EMPTY, D(0), D("0.5"))
    assert (after.units, after.unit_value) == (D("0.5"), D(1))
    assert accounting.units_reproduce_equity(after, D("0.5"))


def test_an_amount_without_a_field_name_is_called_an_amount():
    with pytest.raises(MoneyError, match=r"^amount is not a number: abc$"):
        parse_money("abc")


def test_a_hundred_character_amount_is_read_and_a_hundred_and_one_is_refused_unread():
    hundred = "5." + "0" * 98
    assert len(hundred) == 100 and parse_money(hundred) == D(5)
    with pytest.raises(MoneyError, match=r"^amount is not a number of a sensible size \(101 characters\)$"):
        parse_money(hundred + "0")


def test_a_refused_amount_is_echoed_whole_up_to_forty_characters_and_cut_after():
    forty, forty_one = "x" * 40, "y" * 41
    with pytest.raises(MoneyError) as whole:
        parse_money(forty)
    assert str(whole.value) == f"amount is not a number: {forty}"
    with pytest.raises(MoneyError) as cut:
        parse_money(forty_one)
    assert str(cut.value) == f"amount is not a number: {'y' * 20}…(41 characters)"
    with pytest.raises(MoneyError) as infinite:
        parse_money("-Infinity")
    assert str(infinite.value) == "amount must be a finite number, got -Infinity"


def test_a_negative_new_series_says_so():
    with pytest.raises(ValueError, match=r"^equity must not be negative$"):
        accounting.new_series(EMPTY, D("-1"))


def test_marking_an_empty_account_leaves_it_as_it_was():
    emptied = UnitState(units=D(0), unit_value=D("1.2"), peak_unit_value=D("1.3"), series_base=D(1))
    assert accounting.after_trading(emptied, D(0)) == emptied


def test_a_fill_of_nothing_is_refused():
    candle = bar("100", "101", "99", "100")
    for fill in (market_buy, market_sell):
        with pytest.raises(ValueError, match=r"^cannot fill a quantity of 0$"):
            fill(candle, D(0))


def test_a_fill_pays_the_configured_fee_rate_not_the_default():
    """0.2 % of a $1,000 notional (close 100, no slippage, 10 coins) is $2, not the default 0.1 % ($1)."""
    config = BrokerConfig(fee_rate=D("0.002"), slippage_bps=D(0))
    candle = bar("100", "101", "99", "100")
    assert market_buy(candle, D(10), config).fee == D(2)
    assert market_sell(candle, D(10), config).fee == D(2)
    stop = check_exit(LONG, bar("100", "101", "95", "99"))
    assert stop is not None and exit_fill(LONG, stop, config).fee == D("0.38")  # 95 × 2 × 0.002


@pytest.mark.parametrize(("balance", "available"), [(D(0), D(0)), (D(1000), D(0)), (D(0), D(1000))])
def test_no_balance_or_no_cash_buys_nothing(balance, available):
    assert size_position(balance, available, D(100), D(95)) == Sizing(D(0), "none")


def test_a_stop_at_zero_is_no_stop_and_buys_nothing():
    assert size_position(D(1000), D(1000), D(100), D(0)) == Sizing(D(0), "none")


def test_a_one_dollar_account_buys_five_cent_coins():
    """$1 at $0.05 with a stop at $0.045: position cap 0.10 / 0.05 = 2 coins (risk cap 4, cash cap ≈ 19.98)."""
    assert size_position(D(1), D(1), D("0.05"), D("0.045")) == Sizing(D(2), "position_cap")


def test_one_dollar_of_cash_buys_what_it_can_after_the_fee():
    """$1,000 balance, $1 free, at $0.05: 1 / (0.05 × 1.001) = 19.980019980019… coins, rounded down."""
    assert size_position(D(1000), D(1), D("0.05"), D("0.045")) == Sizing(D("19.980019980019"), "cash_cap")


def test_when_caps_tie_the_position_cap_is_named_first():
    """$1,000, $100 free, no fee, at $10 with a stop at $9: position cap 100 / 10 = 10 = cash cap 100 / 10."""
    assert size_position(D(1000), D(100), D(10), D(9), fee_rate=D(0)) == Sizing(D(10), "position_cap")


# --- the deepest drawdown of a series (backtests, lab reports and the trainer read it) -------------------------


def test_a_series_that_never_falls_has_no_drawdown():
    nothing = accounting.MaxDrawdown(D(0), 0, 0, None)
    assert accounting.max_drawdown([]) == nothing
    assert accounting.max_drawdown([D(100), D(100), D(200)]) == nothing
    assert accounting.max_drawdown([D(100), D(200)]) == nothing  # 100 is not a fall from the 200 after it


def test_a_return_exactly_to_the_peak_right_after_the_trough_is_the_recovery():
    assert accounting.max_drawdown([D(100), D(80), D(100)]) == accounting.MaxDrawdown(D("0.2"), 0, 1, 2)


def test_an_equal_high_keeps_the_first_peak_and_an_equal_low_keeps_the_first_trough():
    """100 → 80 after a second 100: the fall is measured from the first 100 (index 0), and recovers at index 4.
    Two falls of 10 % each: the first one (peak 0, trough 1, back at 2) is the deepest."""
    assert accounting.max_drawdown([D(100), D(90), D(100), D(80), D(100)]) == accounting.MaxDrawdown(D("0.2"), 0, 3, 4)
    assert accounting.max_drawdown([D(100), D(90), D(100), D(90), D(100)]) == accounting.MaxDrawdown(D("0.1"), 0, 1, 2)


# --- equity and unrealised P&L: the one formula the tick, the API and the CLI share (accounting) ---------------


def test_holdings_are_marked_at_the_last_close_to_the_money_scale_half_even_once_per_pair() -> None:
    def value(*quantities: str, close: str = "60000.07") -> Decimal:
        mark = {"BTCUSDT": Mark(Decimal(close), datetime(2024, 1, 1, tzinfo=UTC))}
        return valuation.positions_value(valuation.holdings(
            [("BTCUSDT", "long", Decimal(q), Decimal(1)) for q in quantities], mark))

    # (0.123456789012 + 0.5) BTC at $60,000.07 = $37,407.45098269523084 → 8 places: $37,407.45098270
    assert value("0.123456789012", "0.5") == Decimal("37407.45098270")
    assert value() == Decimal(0)
    # exactly half a unit of the last place rounds to even: 0.000000005 → 0.00000000, 0.000000015 → 0.00000002
    assert value("0.000000005", close="1") == Decimal("0.00000000")
    assert value("0.000000015", close="1") == Decimal("0.00000002")
    # two positions of half a unit each are one holding: 0.000000005 + 0.000000005 → 0.00000001 (not 0 + 0)
    assert value("0.000000005", "0.000000005", close="1") == Decimal("0.00000001")


def test_equity_is_cash_plus_marked_holdings_and_unrealised_pnl_is_marked_minus_cost() -> None:
    assert accounting.equity(Decimal("400.25"), Decimal("612.50")) == Decimal("1012.75")
    assert accounting.unrealized_pnl(Decimal("612.50"), Decimal("600.00")) == Decimal("12.50")
    assert accounting.unrealized_pnl(Decimal("590.00"), Decimal("600.00")) == Decimal("-10.00")
