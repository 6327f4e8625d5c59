"""The one symbol parser: every spelling of a market reads the same, the longest known quote wins, and a pair not
quoted in USD or a USD stablecoin is refused (its prices are not dollars)."""

import pytest

from chalicelib import ledger
from chalicelib.trading.symbols import Symbol, SymbolError, parse_symbol
from chalicelib.valuation import ValuationError, conversion_pair


@pytest.mark.parametrize("text", ["BTCUSDT", "btcusdt", "BTC/USDT", "btc/usdt", "BTC-USDT", "BTC_USDT", " BTCUSDT "])
def test_every_spelling_of_btc_usdt_reads_as_the_same_symbol(text):
    symbol = parse_symbol(text)
    assert symbol == Symbol("BTC", "USDT")
    assert symbol.plain == "BTCUSDT" and symbol.ccxt == "BTC/USDT"


@pytest.mark.parametrize(
    ("text", "base", "quote"),
    [
        ("BTCUSDC", "BTC", "USDC"),
        ("BTCFDUSD", "BTC", "FDUSD"),
        ("BTCBUSD", "BTC", "BUSD"),
        ("BTCTUSD", "BTC", "TUSD"),  # the longest quote wins: not BTCT/USD
        ("ETHUSD", "ETH", "USD"),
        ("eth-usd", "ETH", "USD"),
        ("1000SHIBUSDT", "1000SHIB", "USDT"),
    ],
)
def test_usd_and_stablecoin_quotes_are_split_at_the_longest_known_quote_and_accepted(text, base, quote):
    symbol = parse_symbol(text)
    assert (symbol.base, symbol.quote) == (base, quote)
    assert symbol.usd_quoted and conversion_pair(symbol, [symbol.plain]) is None


def test_the_ledger_takes_the_base_asset_from_the_same_parser():
    assert ledger.base_asset("BTCTUSD") == "BTC"
    assert ledger.base_asset("BTC/USDT") == "BTC"
    assert ledger.base_asset("ETHBTC") == "ETH"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ETHBTC", "ETHBTC is quoted in BTC, which is not USD: add a BTC/USD pair (like BTCUSDT) to the bot's "
                   "symbols to value it"),
        ("ETH/BTC", "ETHBTC is quoted in BTC, which is not USD: add a BTC/USD pair (like BTCUSDT) to the bot's "
                    "symbols to value it"),
        ("BTCEUR", "BTCEUR is quoted in EUR, which is not USD: add a EUR/USD pair (like EURUSDT) to the bot's "
                   "symbols to value it"),
        ("BNB-GBP", "BNBGBP is quoted in GBP, which is not USD: add a GBP/USD pair (like GBPUSDT) to the bot's "
                    "symbols to value it"),
    ],
)
def test_a_pair_not_quoted_in_usd_is_read_but_refused_without_a_pair_that_prices_it(text, message):
    assert parse_symbol(text).quote in ("BTC", "EUR", "GBP")
    with pytest.raises(ValuationError) as caught:
        conversion_pair(text, [text, "ETHUSDT"])
    assert str(caught.value) == message
    quote = parse_symbol(text).quote
    assert conversion_pair(text, [text, f"{quote}USDC"]) == f"{quote}USDC"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "symbol must not be empty"),
        ("   ", "symbol must not be empty"),
        ("???", "cannot read symbol '???'"),
        ("BTCXYZ", "cannot read symbol 'BTCXYZ': it ends in no known quote"),
        ("USDT", "cannot read symbol 'USDT'"),
        ("BTC/", "cannot read symbol 'BTC/'"),
        ("/USDT", "cannot read symbol '/USDT'"),
        ("BTC/USDT/EUR", "cannot read symbol 'BTC/USDT/EUR'"),
        ("BT C/USDT", "cannot read symbol 'BT C/USDT'"),
        ("USDT/USDT", "base and quote are the same asset"),
    ],
)
def test_empty_or_garbage_symbols_are_one_line_errors(text, message):
    with pytest.raises(SymbolError) as caught:
        parse_symbol(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)
