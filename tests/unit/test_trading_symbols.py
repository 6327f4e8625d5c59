"""The one symbol parser: every spelling of a market reads the same, the longest known quote wins, and a pair not
quoted in USD or a USD stablecoin is refused (its prices are not dollars)."""

import pytest

from chalicelib import ledger
from chalicelib.trading.symbols import Symbol, SymbolError, parse_symbol, parse_usd_symbol, require_usd_quote


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
    symbol = parse_usd_symbol(text)
    assert (symbol.base, symbol.quote) == (base, quote)


def test_the_ledger_takes_the_base_asset_from_the_same_parser():
    assert ledger.base_asset("BTCTUSD") == "BTC"
    assert ledger.base_asset("BTC/USDT") == "BTC"
    assert ledger.base_asset("ETHBTC") == "ETH"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ETHBTC", "ETHBTC: quote BTC is not USD or a USD stablecoin; only USD-quoted pairs are supported"),
        ("ETH/BTC", "ETHBTC: quote BTC is not USD or a USD stablecoin; only USD-quoted pairs are supported"),
        ("BTCEUR", "BTCEUR: quote EUR is not USD or a USD stablecoin; only USD-quoted pairs are supported"),
        ("BNB-GBP", "BNBGBP: quote GBP is not USD or a USD stablecoin; only USD-quoted pairs are supported"),
    ],
)
def test_a_pair_not_quoted_in_usd_is_read_but_refused_with_one_line(text, message):
    assert parse_symbol(text).quote in ("BTC", "EUR", "GBP")
    with pytest.raises(SymbolError) as caught:
        require_usd_quote(parse_symbol(text))
    assert str(caught.value) == message


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
