"""A bot is validated once, on construction: a registered strategy, a supported timeframe, a USD-quoted symbol read
by the one parser, a known exchange (lower case) and paper mode — else one BotDefinitionError line."""

import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.bots import BotDefinitionError, BotSpec, parse_bots

ROOT = Path(__file__).resolve().parents[2]


def test_a_bot_stores_its_symbol_plain_and_its_exchange_in_lower_case():
    bot = BotSpec(strategy="ml_basic", symbol="btc/usdt", timeframe="4h", exchange=" BinanceUS ")
    assert (bot.symbol, bot.exchange, bot.mode) == ("BTCUSDT", "binanceus", "paper")
    assert bot.symbols == ("BTCUSDT",)


def test_a_bot_of_several_pairs_keeps_them_once_each_in_a_fixed_order_whatever_the_spelling():
    a = BotSpec(strategy="ml_basic", symbol="eth/usdt+BTCUSDT")
    b = BotSpec(strategy="ml_basic", symbol="BTC-USDT, ETHUSDT, ethusdt")
    assert a.symbol == b.symbol == "BTCUSDT,ETHUSDT"
    assert a.symbols == ("BTCUSDT", "ETHUSDT") and a.identity == b.identity
    assert BotSpec.parse("ml_basic:ETHUSDT+BTCUSDT:1h:replay").symbols == ("BTCUSDT", "ETHUSDT")


def test_a_pair_quoted_in_another_currency_needs_a_pair_that_prices_it_in_dollars():
    with pytest.raises(BotDefinitionError, match="ETHBTC is quoted in BTC, which is not USD: add a BTC/USD pair"):
        BotSpec(strategy="ml_basic", symbol="ETHBTC")
    assert BotSpec(strategy="ml_basic", symbol="ETHBTC+BTCUSDT").symbols == ("BTCUSDT", "ETHBTC")


def test_a_bots_identity_is_symbol_timeframe_exchange_and_mode_and_not_its_strategy():
    a = BotSpec(strategy="ml_basic", symbol="BTCUSDT", timeframe="1h", exchange="kraken")
    b = BotSpec(strategy="ma_crossover", symbol="BTC-USDT", timeframe="1h", exchange="KRAKEN")
    assert a.identity == b.identity == ("BTCUSDT", "1h", "kraken", "paper")
    assert a.label == "ml_basic BTCUSDT 1h paper"
    assert BotSpec(strategy="ml_basic", symbol="BTCUSDT", exchange="binance").identity != a.identity


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"strategy": "nosuch"}, "unknown strategy 'nosuch' (available: ma_crossover, ml_basic)"),
        ({"strategy": "  "}, "strategy must not be empty"),
        ({"timeframe": "7x"}, "unsupported timeframe '7x' (supported: 1m, 5m, 15m, 30m, 1h, 4h, 1d)"),
        ({"symbol": "ETHBTC"}, "ETHBTC is quoted in BTC, which is not USD: add a BTC/USD pair (like BTCUSDT)"),
        ({"symbol": "BTCEUR"}, "BTCEUR is quoted in EUR, which is not USD: add a EUR/USD pair (like EURUSDT)"),
        ({"symbol": "???"}, "cannot read symbol '???'"),
        ({"symbol": ""}, "symbol must not be empty"),
        ({"exchange": "nosuchexchange"}, "unknown exchange 'nosuchexchange'"),
        ({"exchange": ""}, "exchange must not be empty"),
        ({"mode": "live"}, "live trading is not implemented: this bot only paper-trades"),
    ],
)
def test_a_bad_bot_definition_is_one_line_naming_what_is_wrong(fields, message):
    definition = {"strategy": "ml_basic", "symbol": "BTCUSDT", "timeframe": "1h", "exchange": "binance", **fields}
    with pytest.raises(BotDefinitionError) as caught:
        BotSpec(**definition)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_any_exchange_ccxt_knows_is_accepted_but_the_known_ones_do_not_import_ccxt():
    check = (
        "import sys\n"
        "from chalicelib.bots import BotSpec\n"
        "for name in ('replay', 'binance', 'binanceus', 'kraken', 'coinbase'):\n"
        "    BotSpec(strategy='ma_crossover', symbol='BTCUSDT', exchange=name)\n"
        "print('ccxt' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"
    assert BotSpec(strategy="ma_crossover", symbol="BTCUSDT", exchange="Bitstamp").exchange == "bitstamp"


def test_a_bot_list_reads_each_entry_and_names_the_bad_one():
    bots = parse_bots(" ml_basic:btc/usdt , ma_crossover:ETHUSDT:4h:KRAKEN ,")
    assert [(b.strategy, b.symbol, b.timeframe, b.exchange) for b in bots] == [
        ("ml_basic", "BTCUSDT", "1h", "binance"), ("ma_crossover", "ETHUSDT", "4h", "kraken")]
    with pytest.raises(BotDefinitionError, match=r"^bot 'ml_basic:ETHBTC': ETHBTC is quoted in BTC, which is not USD"):
        parse_bots("ma_crossover:BTCUSDT, ml_basic:ETHBTC")
    with pytest.raises(BotDefinitionError, match="expected STRATEGY:SYMBOL"):
        parse_bots("ml_basic")
