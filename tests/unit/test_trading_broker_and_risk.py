"""Paper broker fills and risk rules, each checked against numbers worked out by hand in the comments."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from chalicelib.trading.broker import (
    BrokerConfig,
    ExitSignal,
    check_exit,
    close_trade,
    exit_fill,
    fee_for,
    gross_pnl,
    market_buy,
    market_sell,
)
from chalicelib.trading.candles import Candle
from chalicelib.trading.markets import MarketRules
from chalicelib.trading.position import PositionView
from chalicelib.trading.risk import RiskConfig, Sizing, can_open, drawdown, size_position

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
NO_SLIP = BrokerConfig(slippage_bps=D(0))

# A long of 2 BTC-ish units bought at 100 with a stop at 95 and a target at 110, entered at T0's close.
POSITION = PositionView(entry_price=D(100), quantity=D(2), stop_loss=D(95), take_profit=D(110), opened_at=T0)
ENTRY_FEE = D("0.20")  # 100 * 2 = 200 notional; 0.1% of 200 = 0.20


def bar(o, h, lo, c, at=T0 + HOUR) -> Candle:
    return Candle(at, D(o), D(h), D(lo), D(c), D(1))


# ------------------------------------------------------------------------------------------ fills and fees


def test_a_market_buy_fills_at_the_close_plus_slippage_and_pays_the_taker_fee():
    # close 20000, slippage 10 bps: 20000 * 1.001 = 20020; 0.05 * 20020 = 1001.00 notional;
    # fee 0.1% of 1001.00 = 1.001.
    fill = market_buy(bar(19900, 20100, 19800, 20000), D("0.05"), BrokerConfig(slippage_bps=D(10)))
    assert (fill.price, fill.notional, fill.fee) == (D("20020"), D("1001.00"), D("1.001"))


def test_a_market_sell_fills_at_the_close_minus_slippage():
    # close 20000, 10 bps: 20000 * 0.999 = 19980; 0.05 * 19980 = 999.00; fee 0.999.
    fill = market_sell(bar(19900, 20100, 19800, 20000), D("0.05"), BrokerConfig(slippage_bps=D(10)))
    assert (fill.price, fill.notional, fill.fee) == (D("19980"), D("999.00"), D("0.999"))


def test_the_default_fee_is_a_tenth_of_a_percent_of_notional():
    # 0.1% of 1234.56 = 1.23456
    assert fee_for(D("1234.56")) == D("1.23456")
    assert BrokerConfig().fee_rate == D("0.001")


def test_fees_are_rounded_to_the_money_scale_half_even():
    # 0.001 * 0.123456785 = 0.000123456785 -> 8 places: 0.00012346 (the 9th digit 6 rounds up)
    assert fee_for(D("0.123456785")) == D("0.00012346")


def test_broker_config_refuses_negative_costs():
    with pytest.raises(ValueError, match="fee_rate"):
        BrokerConfig(fee_rate=D("-0.001"))
    with pytest.raises(ValueError, match="slippage_bps"):
        BrokerConfig(slippage_bps=D(-1))


# -------------------------------------------------------------------------------------- stops and targets


def test_a_candle_whose_low_reaches_the_stop_closes_at_the_stop_price():
    # open 99 > stop 95, low 94 <= 95 -> stop at 95. Gross (95 - 100) * 2 = -10.
    # Exit fee 0.1% of 190 = 0.19; with the entry fee 0.20 the fees are 0.39, net -10.39.
    signal = check_exit(POSITION, bar(99, 101, 94, 96))
    assert signal == ExitSignal(price=D(95), reason="stop_loss", gapped=False)
    trade = close_trade(POSITION, exit_fill(POSITION, signal, NO_SLIP), ENTRY_FEE)
    assert (trade.gross_pnl, trade.exit_fee, trade.fees, trade.net_pnl) == (
        D("-10"),
        D("0.19"),
        D("0.39"),
        D("-10.39"),
    )


def test_a_stop_fill_pays_slippage_because_it_is_a_market_order():
    # 95 * (1 - 5/10000) = 94.9525; gross (94.9525 - 100) * 2 = -10.095; fee 0.1% of 189.905 = 0.189905.
    fill = exit_fill(POSITION, check_exit(POSITION, bar(99, 101, 94, 96)), BrokerConfig(slippage_bps=D(5)))
    assert (fill.price, fill.notional, fill.fee) == (D("94.9525"), D("189.905"), D("0.189905"))
    assert gross_pnl(POSITION.entry_price, fill.price, fill.quantity) == D("-10.095")


def test_a_candle_whose_high_reaches_the_target_closes_at_the_target_without_slippage():
    # high 111 >= target 110 and low 104 > stop: limit fill at 110 even with 5 bps slippage configured.
    # Gross (110 - 100) * 2 = +20; exit fee 0.1% of 220 = 0.22; net 20 - 0.20 - 0.22 = 19.58.
    signal = check_exit(POSITION, bar(105, 111, 104, 108))
    assert signal == ExitSignal(price=D(110), reason="take_profit", gapped=False)
    trade = close_trade(POSITION, exit_fill(POSITION, signal, BrokerConfig(slippage_bps=D(5))), ENTRY_FEE)
    assert (trade.gross_pnl, trade.exit_fee, trade.net_pnl) == (
        D(20),
        D("0.22"),
        D("19.58"),
    )


def test_a_gap_through_the_stop_fills_at_the_open_not_at_the_stop():
    # opens at 90, already below the stop 95: the stop-market order fills at 90.
    # Gross (90 - 100) * 2 = -20 (worse than the -10 the stop promised).
    signal = check_exit(POSITION, bar(90, 92, 88, 91))
    assert signal == ExitSignal(price=D(90), reason="stop_loss", gapped=True)
    assert gross_pnl(D(100), exit_fill(POSITION, signal, NO_SLIP).price, D(2)) == D(-20)


def test_a_gap_above_the_target_fills_at_the_better_open():
    # opens at 115 above the target 110: fill at 115, gross (115 - 100) * 2 = +30.
    signal = check_exit(POSITION, bar(115, 118, 112, 117))
    assert signal == ExitSignal(price=D(115), reason="take_profit", gapped=True)
    assert gross_pnl(D(100), exit_fill(POSITION, signal).price, D(2)) == D(30)


def test_when_one_candle_touches_both_stop_and_target_the_stop_wins():
    # low 94 <= 95 and high 112 >= 110 in the same hour: we cannot know the order, so assume the loss.
    signal = check_exit(POSITION, bar(100, 112, 94, 105))
    assert signal is not None
    assert (signal.reason, signal.price) == ("stop_loss", D(95))


def test_a_candle_between_stop_and_target_leaves_the_position_open():
    assert check_exit(POSITION, bar(100, "109.99", "95.01", 101)) is None


def test_the_entry_candle_itself_never_triggers_the_stop():
    # The entry filled at T0's close; T0's low of 80 happened before the position existed.
    assert check_exit(POSITION, bar(100, 120, 80, 100, at=T0)) is None


def test_a_position_costs_its_quantity_at_its_entry_price():
    assert POSITION.cost == D(200)


# ------------------------------------------------------------------------------------------------- sizing


def test_sizing_is_capped_at_ten_percent_of_the_balance():
    # balance 1000: position cap 10% = 100 -> 100 / 100 = 1 unit.
    # risk cap: 2% of 1000 = 20 risked over a 5 stop distance -> 4 units.  cash cap: 1000 / 100.1 = 9.99.
    sizing = size_position(D(1000), D(1000), D(100), D(95))
    assert (sizing.quantity, sizing.binding) == (D(1), "position_cap")


def test_sizing_risks_at_most_two_percent_of_the_balance_on_the_stop_distance():
    # stop 60 -> distance 40; 20 / 40 = 0.5 units (cost 50, below the 100 position cap).
    # If the stop is hit the loss is 0.5 * 40 = 20 = 2% of 1000.
    sizing = size_position(D(1000), D(1000), D(100), D(60))
    assert (sizing.quantity, sizing.binding) == (D("0.5"), "risk_cap")


def test_sizing_never_spends_more_than_the_available_cash_including_the_fee():
    # only 50 available: 50 / (100 * 1.001) = 0.4995004995004995... -> rounded DOWN to 12 places.
    # Check: 0.4995004995 * 100 = 49.95004995, fee 0.04995005 -> 49.99999999... <= 50.
    sizing = size_position(D(1000), D(50), D(100), D(95))
    assert (sizing.quantity, sizing.binding) == (D("0.499500499500"), "cash_cap")
    assert sizing.quantity * D(100) * D("1.001") <= D(50)


def test_sizing_rounds_the_quantity_down_never_up():
    # 10% of 1000 at 30000 = 0.0033333... -> 0.003333333333 (12 places, truncated)
    sizing = size_position(D(1000), D(1000), D(30000), D(29000))
    assert sizing.quantity == D("0.003333333333")


def test_sizing_follows_a_configured_position_fraction():
    # 25% of 1000 = 250 -> 2.5 units; risk cap 20 / 5 = 4 stays above it.
    sizing = size_position(
        D(1000), D(1000), D(100), D(95), config=RiskConfig(max_position_fraction=D("0.25"))
    )
    assert sizing.quantity == D("2.5")


@pytest.mark.parametrize(("balance", "available", "stop"), [(D(0), D(0), D(95)), (D(1000), D(1000), D(100))])
def test_sizing_says_zero_when_there_is_no_money_or_no_valid_stop(balance, available, stop):
    assert size_position(balance, available, D(100), stop).quantity == 0


# ------------------------------------------------------------------------------- sizing across the wallet


def test_the_total_exposure_cap_leaves_room_only_up_to_half_of_equity():
    # equity 1000, positions already worth 450 of it: (1000 * 0.50 - 450) / 100 = 0.5 units (position cap 1, risk 4)
    sizing = size_position(D(1000), D(550), D(100), D(95), exposure=D(450))
    assert (sizing.quantity, sizing.binding) == (D("0.5"), "exposure_cap")
    # at the cap exactly, nothing more: (500 - 500) / 100 = 0
    assert size_position(D(1000), D(500), D(100), D(95), exposure=D(500)) == Sizing(D(0), "none")


def test_the_asset_cap_leaves_room_only_up_to_a_quarter_of_equity_in_one_asset():
    # 220 of 1000 already in this asset: (1000 * 0.25 - 220) / 100 = 0.3 units (exposure cap 5, position cap 1)
    sizing = size_position(D(1000), D(780), D(100), D(95), exposure=D(220), asset_exposure=D(220))
    assert (sizing.quantity, sizing.binding) == (D("0.3"), "asset_cap")


def test_configured_exposure_caps_bind_at_their_own_fractions():
    config = RiskConfig(max_position_fraction=D(1), risk_per_trade=D(1), max_total_exposure=D("0.3"),
                        max_asset_exposure=D("0.2"))
    # total: (1000 * 0.3 - 150) / 100 = 1.5 below the asset cap (1000 * 0.2 - 0) / 100 = 2
    assert size_position(D(1000), D(850), D(100), D(95), config=config, exposure=D(150)) == Sizing(
        D("1.5"), "exposure_cap")
    # asset: (200 - 120) / 100 = 0.8 below the total (300 - 120) / 100 = 1.8
    assert size_position(D(1000), D(880), D(100), D(95), config=config, exposure=D(120),
                         asset_exposure=D(120)) == Sizing(D("0.8"), "asset_cap")


def test_the_lot_step_rounds_down_and_below_the_exchange_minimum_nothing_is_bought():
    rules = MarketRules(step=D("0.001"), min_quantity=D("0.002"), min_notional=D(5))
    # position cap 1000 * 0.10 / 30000 = 0.00333… → 0.003 on the 0.001 step (cost 90)
    assert size_position(D(1000), D(1000), D(30000), D(29000), rules=rules) == Sizing(D("0.003"), "position_cap")
    # 20 000 of equity: 0.0666… → 0.066 (never 0.067)
    assert size_position(D(20000), D(20000), D(30000), D(29000), rules=rules).quantity == D("0.066")
    # 500 of equity: 0.00166… → 0.001, under the minimum quantity 0.002
    assert size_position(D(500), D(500), D(30000), D(29000), rules=rules) == Sizing(D(0), "min_order")
    # 0.002 at 2,000 = 4 is under the 5 minimum notional; exactly 5 (0.0025 at 2,000) is allowed
    tiny = MarketRules(step=D("0.0001"), min_quantity=D("0.0001"), min_notional=D(5))
    assert size_position(D(40), D(40), D(2000), D(1900), rules=tiny) == Sizing(D(0), "min_order")
    assert size_position(D(50), D(50), D(2000), D(1900), rules=tiny) == Sizing(D("0.0025"), "position_cap")
    # at the minimum quantity exactly it trades
    assert size_position(D(600), D(600), D(30000), D(29000), rules=rules) == Sizing(D("0.002"), "position_cap")


def test_a_caps_budget_is_rounded_down_to_the_cent_fraction_so_the_notional_never_exceeds_it():
    # 10 % of 9,991.00489959 = 999.100489959: the budget is 999.10048995 (down, never 999.10048996 half-even),
    # so 999.10048995 coins at $1 cost exactly the budget and not 0.00000001 over the cap
    sizing = size_position(D("9991.00489959"), D(10000), D(1), D("0.5"), config=RiskConfig(risk_per_trade=D(1)))
    assert sizing == Sizing(D("999.10048995"), "position_cap")
    assert sizing.quantity * D(1) <= D("9991.00489959") * D("0.10")


def test_a_step_that_rounds_the_size_to_zero_is_none_not_a_minimum_refusal():
    rules = MarketRules(step=D(1))
    assert size_position(D(1000), D(1000), D(30000), D(29000), rules=rules) == Sizing(D(0), "none")


@pytest.mark.parametrize(("field", "value"), [("max_total_exposure", D(0)), ("max_asset_exposure", D("1.01")),
                                              ("max_total_exposure", D("NaN")), ("max_positions_per_symbol", 0),
                                              ("max_positions_per_symbol", D(2))])
def test_the_wallet_caps_must_be_fractions_and_positions_per_pair_a_whole_number(field, value):
    with pytest.raises(ValueError, match=field):
        RiskConfig(**{field: value})
    assert RiskConfig(max_total_exposure=D(1), max_asset_exposure=D(1), max_positions_per_symbol=3)


@pytest.mark.parametrize(("field", "value"), [("step", D(0)), ("step", D(-1)), ("min_quantity", D(-1)),
                                              ("min_notional", D("Infinity"))])
def test_market_rules_refuse_a_step_that_is_not_positive_and_negative_minimums(field, value):
    with pytest.raises(ValueError, match=field.replace("step", "lot step")):
        MarketRules(**{field: value})


# ----------------------------------------------------------------------------------------------- drawdown


def test_drawdown_is_measured_from_the_peak_balance():
    # peak 1000, balance 850 -> (1000 - 850) / 1000 = 0.15
    assert drawdown(D(850), D(1000)) == D("0.15")
    assert drawdown(D(1100), D(1000)) == 0


def test_new_positions_stop_once_the_drawdown_reaches_twenty_percent():
    # 850 is 15% below 1000: still trading. 800 is exactly 20%: the limit is reached, no new entries.
    assert can_open(D(850), D(1000))
    assert can_open(D("800.01"), D(1000))
    assert not can_open(D(800), D(1000))
    assert not can_open(D(700), D(1000))
    # a custom limit of 10%: 850 is past it
    assert not can_open(D(850), D(1000), limit=D("0.10"))
