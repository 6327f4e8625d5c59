"""chalicelib/valuation.py by hand: how each pair's price becomes dollars (USD and stablecoins 1:1, other quotes
through a conversion pair, else refused naming the pair to add), holdings at the marks (at cost before one), the
asset breakdown whose values sum to equity exactly, and gross / net exposure per asset and in total."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib.trading.candles import Candle
from chalicelib.valuation import (
    AssetLine,
    ExposureLine,
    Holding,
    Mark,
    ValuationError,
    asset_exposure,
    breakdown,
    conversion_pair,
    exposure,
    gross_exposure,
    holdings,
    positions_value,
    priced_as,
    share,
    to_account_currency,
)

D = Decimal
T = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
SYMBOLS = ("BTCUSDC", "BTCUSDT", "ETHUSDT")  # a bot's fixed (alphabetical) order
MARKS = {"BTCUSDC": Mark(D("30010"), T), "BTCUSDT": Mark(D("30000"), T), "ETHUSDT": Mark(D("2000"), T)}
CASH = D("600")


def _c(t: datetime, o: str, h: str, lo: str, c: str) -> Candle:
    return Candle(t, D(o), D(h), D(lo), D(c), D("1"))


# ------------------------------------------------------------------------------------------ how prices become USD


def test_usd_and_stablecoin_quotes_count_one_to_one_and_say_so():
    assert conversion_pair("BTCUSDT", SYMBOLS) is None and conversion_pair("BTCUSD", ["BTCUSD"]) is None
    assert priced_as("BTCUSD", ["BTCUSD"]) == "BTCUSD close in USD"
    assert priced_as("BTCUSDT", SYMBOLS) == "BTCUSDT close; USDT counted 1:1 as USD"
    assert priced_as("BTCUSDC", SYMBOLS) == "BTCUSDC close; USDC counted 1:1 as USD"


def test_another_quote_goes_through_the_conversion_pair_or_is_refused_naming_the_pair_to_add():
    assert conversion_pair("ETHBTC", ["BTCUSDT", "ETHBTC"]) == "BTCUSDT"
    assert conversion_pair("ETH/BTC", ["BTC/USDT", "ETH/BTC"]) == "BTCUSDT"  # any spelling
    assert priced_as("ETHBTC", ["BTCUSDT", "ETHBTC"]) == "ETHBTC close × BTCUSDT close"
    with pytest.raises(ValuationError, match="ETHBTC is quoted in BTC, which is not USD: add a BTC/USD pair "
                                             r"\(like BTCUSDT\) to the bot's symbols to value it"):
        conversion_pair("ETHBTC", ["ETHBTC", "ETHUSDT"])  # ETHUSDT does not price BTC
    with pytest.raises(ValuationError):
        to_account_currency({"ETHBTC": [_c(T, "0.05", "0.05", "0.05", "0.05")]})


def test_candles_of_a_non_usd_pair_are_multiplied_by_the_conversion_close_at_the_same_time():
    eth_btc = [_c(T, "0.05", "0.051", "0.049", "0.0505"), _c(T + H, "0.0505", "0.052", "0.05", "0.0515"),
               _c(T + H * 2, "0.0515", "0.0515", "0.0515", "0.0515")]
    btc_usdt = [_c(T, "29000", "30500", "28900", "30000"), _c(T + H, "30000", "30100", "29900", "30050.5")]
    out = to_account_currency({"ETHBTC": eth_btc, "BTCUSDT": btc_usdt}, ["BTCUSDT", "ETHBTC"])
    assert out["BTCUSDT"] == btc_usdt  # a USD-quoted pair as it is
    # 00:00: each ETHBTC price × BTCUSDT's close 30,000: 0.05 → 1,500; 0.051 → 1,530; 0.049 → 1,470; 0.0505 → 1,515
    # 01:00: × 30,050.5: 0.0505 → 1,517.550250; 0.052 → 1,562.626; 0.05 → 1,502.525; 0.0515 → 1,547.600750
    # 02:00: no BTCUSDT candle yet → the ETHBTC candle waits (left out)
    assert out["ETHBTC"] == [
        Candle(T, D("1500.00000000"), D("1530.00000000"), D("1470.00000000"), D("1515.00000000"), D("1")),
        Candle(T + H, D("1517.55025000"), D("1562.62600000"), D("1502.52500000"), D("1547.60075000"), D("1")),
    ]


def test_the_conversion_rounds_to_the_money_scale_half_even():
    # 0.00000003 × 0.5 = 0.000000015 → 0.00000002 (half to even); × 0.7 = 0.000000021 → 0.00000002
    tiny = [_c(T, "0.00000003", "0.00000003", "0.00000003", "0.00000003")]
    out = to_account_currency({"XBTC": tiny, "BTCUSD": [_c(T, "0.5", "0.5", "0.5", "0.5")]}, ["BTCUSD", "XBTC"])
    assert out["XBTC"][0].close == D("0.00000002")
    out = to_account_currency({"XBTC": tiny, "BTCUSD": [_c(T, "0.7", "0.7", "0.7", "0.7")]}, ["BTCUSD", "XBTC"])
    assert out["XBTC"][0].close == D("0.00000002")


# ------------------------------------------------------------------------------------------ holdings and equity


def test_holdings_are_quantity_times_mark_at_the_money_scale_and_at_cost_before_a_mark():
    items = holdings([("BTCUSDT", "long", D("0.123456789012"), D("3700")),
                      ("SOLUSDT", "long", D("2"), D("50")),
                      ("ETHUSDT", "short", D("0.05"), D("99"))],
                     {**MARKS, "BTCUSDT": Mark(D("30000.12345678"), T)})
    # 0.123456789012 × 30,000.12345678 = 3,703.71891193764… → 3,703.71891194
    assert items[0] == Holding("BTCUSDT", "BTC", D("0.123456789012"), D("3703.71891194"))
    assert items[1] == Holding("SOLUSDT", "SOL", D("2"), D("50"))  # no SOL candle yet: at its cost
    assert items[2] == Holding("ETHUSDT", "ETH", D("-0.05"), D("-100.00"))  # a short counts negative
    assert positions_value(items) == D("3703.71891194") + 50 - 100


def _wallet() -> list[Holding]:
    """BTC held through two pairs and ETH through one: 0.002 BTCUSDT, 0.001 BTCUSDC, 0.05 ETHUSDT."""
    return holdings([("BTCUSDT", "long", D("0.002"), D("58")), ("ETHUSDT", "long", D("0.05"), D("95")),
                     ("BTCUSDC", "long", D("0.001"), D("29"))], MARKS)


def test_the_breakdown_lists_cash_then_each_asset_valued_and_its_values_sum_to_equity():
    # BTC: 0.002 × 30,000 + 0.001 × 30,010 = 60 + 30.01 = 90.01; ETH: 0.05 × 2,000 = 100
    # equity = 600 + 90.01 + 100 = 790.01; shares (6 places): 600/790.01 = 0.759484, 90.01/790.01 = 0.113935,
    # 100/790.01 = 0.126581 (they add to 1.000000)
    lines = breakdown(CASH, _wallet(), MARKS, SYMBOLS)
    assert lines == [
        AssetLine("USD", D("600"), D("1"), D("600"), D("0.759484"), "cash, USD"),
        # BTC's price is the mark of its first pair in the bot's order, BTCUSDC
        AssetLine("BTC", D("0.003"), D("30010"), D("90.01"), D("0.113935"), "BTCUSDC close; USDC counted 1:1 as USD"),
        AssetLine("ETH", D("0.05"), D("2000"), D("100.00"), D("0.126581"), "ETHUSDT close; USDT counted 1:1 as USD"),
    ]
    assert sum(line.value for line in lines) == D("790.01")
    assert sum(line.share_of_equity or 0 for line in lines) == 1


def test_exposure_per_asset_and_in_total_gross_and_net_as_amounts_and_shares():
    # long only: gross = net; BTC 90.01 (0.113935 of 790.01), ETH 100 (0.126581), total 190.01 (0.240516)
    assert exposure(CASH, _wallet()) == [
        ExposureLine("BTC", D("90.01"), D("90.01"), D("0.113935"), D("0.113935")),
        ExposureLine("ETH", D("100.00"), D("100.00"), D("0.126581"), D("0.126581")),
        ExposureLine("total", D("190.01"), D("190.01"), D("0.240516"), D("0.240516")),
    ]
    assert gross_exposure(_wallet()) == D("190.01")
    assert asset_exposure(_wallet(), "BTC") == D("90.01") and asset_exposure(_wallet(), "SOL") == 0


def test_a_short_makes_gross_and_net_part():
    items = holdings([("BTCUSDT", "long", D("0.002"), D("58")), ("BTCUSDC", "long", D("0.001"), D("29")),
                      ("ETHUSDT", "short", D("0.05"), D("95"))], MARKS)
    # equity = 600 + 90.01 − 100 = 590.01; ETH gross 100 (0.169489), net −100 (−0.169489);
    # total gross 190.01 (0.322045), net 90.01 − 100 = −9.99 (−0.016932)
    assert exposure(CASH, items) == [
        ExposureLine("BTC", D("90.01"), D("90.01"), D("0.152557"), D("0.152557")),
        ExposureLine("ETH", D("100.00"), D("-100.00"), D("0.169489"), D("-0.169489")),
        ExposureLine("total", D("190.01"), D("-9.99"), D("0.322045"), D("-0.016932")),
    ]
    assert gross_exposure(items) == D("190.01") and asset_exposure(items, "ETH") == D("100.00")


def test_shares_round_to_six_places_and_an_account_without_equity_has_none():
    assert share(D("1"), D("3")) == D("0.333333")
    assert share(D("2"), D("3")) == D("0.666667")
    assert share(D("5"), D("0")) is None and share(D("5"), D("-1")) is None
    assert exposure(D("0"), []) == [ExposureLine("total", D("0"), D("0"), None, None)]
    assert breakdown(D("0"), [], {}, ()) == [AssetLine("USD", D("0"), D("1"), D("0"), None, "cash, USD")]


def test_a_pair_valued_through_a_conversion_pair_in_the_breakdown():
    # ETHBTC close 0.05 × BTCUSDT close 30,000 = 1,500 USD per ETH (the mark the tick stores for ETHBTC)
    marks = {"BTCUSDT": Mark(D("30000"), T), "ETHBTC": Mark(D("1500.00000000"), T)}
    items = holdings([("ETHBTC", "long", D("0.1"), D("140")), ("BTCUSDT", "long", D("0.001"), D("29"))], marks)
    # ETH 0.1 × 1,500 = 150; BTC 0.001 × 30,000 = 30; equity = 820 + 150 + 30 = 1,000
    lines = breakdown(D("820"), items, marks, ("BTCUSDT", "ETHBTC"))
    assert [(x.asset, x.value, x.share_of_equity, x.priced_as) for x in lines] == [
        ("USD", D("820"), D("0.82"), "cash, USD"),
        ("BTC", D("30.000"), D("0.03"), "BTCUSDT close; USDT counted 1:1 as USD"),
        ("ETH", D("150.00000000"), D("0.15"), "ETHBTC close × BTCUSDT close"),
    ]


# --------------------------------------------------------------------------- edges the mutation run pointed at


def test_a_pair_whose_conversion_pair_has_no_candles_yet_waits_and_the_pairs_after_it_still_convert():
    eth_btc = [_c(T, "0.05", "0.05", "0.05", "0.05")]
    # BTCUSDT's candles are missing this tick: ETHBTC waits (no candle), nothing raises — the bot has the pair
    assert to_account_currency({"ETHBTC": eth_btc}, ["BTCUSDT", "ETHBTC"]) == {"ETHBTC": []}
    # without the bot's pairs named, the candles given are all there is: ETHBTC cannot be valued
    with pytest.raises(ValuationError, match="add a BTC/USD pair"):
        to_account_currency({"ETHBTC": eth_btc})
    # a USD pair first, then the pair it prices: both come back (the USD pair does not end the loop)
    btc = [_c(T, "60000", "60000", "60000", "60000")]
    out = to_account_currency({"BTCUSDT": btc, "ETHBTC": eth_btc})
    assert out["BTCUSDT"] == btc and [c.close for c in out["ETHBTC"]] == [D("3000.00000000")]


def test_a_share_of_exactly_one_dollar_of_equity_is_a_share_and_not_none():
    assert share(D("0.5"), D(1)) == D("0.500000")
    assert share(D(1), D("0.5")) == D("2.000000")


def test_an_empty_wallets_figures_are_decimal_zeros():
    figures = [positions_value([]), gross_exposure([]), asset_exposure([], "BTC")]
    [total] = exposure(CASH, [])
    figures += [total.gross, total.net]
    assert figures == [0] * 5 and all(isinstance(f, Decimal) for f in figures)


def test_a_held_asset_without_a_mark_shows_price_zero_and_its_value_at_cost_and_is_priced_by_its_own_pair():
    items = holdings([("SOLUSDT", "long", D(2), D("300"))], {})  # not one of the named pairs, no mark yet
    [cash, sol] = breakdown(CASH, items, {}, ())
    assert (sol.asset, sol.quantity, sol.price, sol.value, sol.priced_as) == (
        "SOL", D(2), D(0), D("300"), "SOLUSDT close; USDT counted 1:1 as USD")
    assert cash.value + sol.value == D(900)


def test_bundled_order_filters_are_for_the_bundled_pairs_only():
    from chalicelib.trading.markets import UNRESTRICTED, bundled_rules

    assert bundled_rules("SOLUSDT") is UNRESTRICTED
    assert bundled_rules("BTCUSDT").min_notional == D(5)
