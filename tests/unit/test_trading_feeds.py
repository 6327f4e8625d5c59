"""Feeds: replay reveals recorded candles in order; the ccxt feed parses real Binance responses through ccxt
(only its HTTP layer is stubbed), drops the still-open candle and turns network trouble into one line."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from chalicelib.trading.candles import to_epoch_ms, validate_candles
from chalicelib.trading.feeds import BUNDLED_DATA, CcxtFeed, FeedError, ReplayFeed

HOUR = timedelta(hours=1)
FIRST = datetime(2023, 1, 1, tzinfo=UTC)  # first candle of the bundled data
KLINES_SAMPLE = {
    "httpResponse": [
        [
            1710327600000,
            "73249.24000000",
            "73394.30000000",
            "73234.62000000",
            "73347.62000000",
            "0.23592000",
            1710331199999,
            "17296.89307540",
            55,
            "0.22048000",
            "16164.89454310",
            "0",
        ]
    ],
}


# ------------------------------------------------------------------------------------------------- replay


def test_the_bundled_data_is_all_there_and_valid_apart_from_its_one_known_gap():
    candles = ReplayFeed().all_candles("BTCUSDT", "1h")
    assert len(candles) == 18_000
    assert candles[0].open_time == FIRST
    assert candles[0].open == Decimal("16541.77")  # parsed from the text, not through float
    result = validate_candles(candles, "1h")
    assert [(g.after.isoformat(), g.missing) for g in result.gaps] == [("2023-03-24T12:00:00+00:00", 1)]


def test_the_bundled_eth_data_has_the_same_hours_as_the_btc_data_and_other_prices():
    btc = ReplayFeed().all_candles("BTCUSDT", "1h")
    eth = ReplayFeed(symbol="eth/usdt").all_candles("ETHUSDT", "1h")
    assert len(eth) == len(btc) == 18_000
    assert [c.open_time for c in eth] == [c.open_time for c in btc]
    assert eth[0].close == Decimal("1194.09") and btc[0].close == Decimal("16529.67")
    assert ReplayFeed(symbol="ETHUSDT").path == BUNDLED_DATA / "ETHUSDT_1h.csv.gz"


def test_replay_without_a_file_refuses_a_symbol_it_has_no_bundled_candles_for():
    with pytest.raises(FeedError, match=r"^no bundled candles for SOLUSDT; pass --data SOLUSDT=FILE$"):
        ReplayFeed(symbol="SOLUSDT")
    with pytest.raises(FeedError, match=r"^no bundled candles for BTCUSDT 4h; pass --data BTCUSDT=FILE$"):
        ReplayFeed(symbol="BTCUSDT", timeframe="4h")


def test_a_data_file_named_for_one_symbol_is_refused_for_another(tmp_path):
    path = tmp_path / "BTCUSDT_1h.csv"
    path.write_text("timestamp_ms,open,high,low,close,volume\n1672531200000,1,1,1,1,1\n")
    with pytest.raises(FeedError, match="holds BTCUSDT, not ETHUSDT"):
        ReplayFeed(path, symbol="ETHUSDT")


def test_a_data_file_whose_name_does_not_tell_the_symbol_serves_the_symbol_the_user_names(tmp_path):
    path = tmp_path / "candles.csv"
    path.write_text("timestamp_ms,open,high,low,close,volume\n1672531200000,1,1,1,1,1\n")
    feed = ReplayFeed(path, symbol="SOL/USDT", timeframe="1h")
    assert feed.symbol == "SOLUSDT"
    assert len(feed.all_candles("SOLUSDT", "1h")) == 1
    assert feed.describe() == f"replay of SOLUSDT 1h candles ({path})"


def test_replay_returns_only_candles_closed_at_now_and_newer_than_since():
    feed = ReplayFeed()
    # At 03:30 the 00:00, 01:00 and 02:00 candles are closed; 03:00 is still open.
    now = FIRST + timedelta(hours=3, minutes=30)
    got = feed.fetch_closed_candles("BTCUSDT", "1h", None, 10, now)
    assert [c.open_time for c in got] == [FIRST, FIRST + HOUR, FIRST + 2 * HOUR]
    got = feed.fetch_closed_candles("BTC/USDT", "1h", FIRST, 10, now)
    assert [c.open_time for c in got] == [FIRST + HOUR, FIRST + 2 * HOUR]
    # With since=None the newest `limit` closed ones come back, oldest first.
    got = feed.fetch_closed_candles("BTCUSDT", "1h", None, 2, now)
    assert [c.open_time for c in got] == [FIRST + HOUR, FIRST + 2 * HOUR]


def test_replay_reveals_the_next_candles_after_the_cursor_in_order():
    feed = ReplayFeed()
    first = feed.reveal_next("BTCUSDT", "1h", None)
    assert [c.open_time for c in first] == [FIRST]
    nxt = feed.reveal_next("BTCUSDT", "1h", first[-1].open_time, count=3)
    assert [c.open_time for c in nxt] == [FIRST + HOUR, FIRST + 2 * HOUR, FIRST + 3 * HOUR]
    # The replay "now" for those three is the close of the third: fetching at it gives exactly them.
    now = feed.replay_now("BTCUSDT", "1h", first[-1].open_time, count=3)
    assert now == FIRST + 4 * HOUR
    assert feed.fetch_closed_candles("BTCUSDT", "1h", first[-1].open_time, 500, now) == nxt


def test_replaying_500_ticks_at_once_or_100_ticks_five_times_reveals_the_same_candles():
    feed = ReplayFeed()

    def run(chunks: list[int]) -> list:
        cursor, seen = None, []
        for ticks in chunks:
            for _ in range(ticks):
                now = feed.replay_now("BTCUSDT", "1h", cursor)
                new = feed.fetch_closed_candles("BTCUSDT", "1h", cursor, 500, now)
                seen.extend(new)
                cursor = new[-1].open_time
        return seen

    once, chunked = run([500]), run([100] * 5)
    assert once == chunked
    assert len(once) == 500
    validate_candles(once, "1h")  # strictly increasing, in order, nothing revealed twice


def test_replay_ends_when_the_recording_does():
    feed = ReplayFeed()
    last = feed.all_candles("BTCUSDT", "1h")[-1]
    assert feed.replay_now("BTCUSDT", "1h", last.open_time) is None
    assert feed.reveal_next("BTCUSDT", "1h", last.open_time) == []


def test_replay_reads_a_plain_csv_and_refuses_other_symbols(tmp_path: Path):
    path = tmp_path / "ETHUSDT_1h.csv"
    path.write_text("timestamp_ms,open,high,low,close,volume\n1672531200000,1.5,2,1,1.75,10.123456789\n")
    feed = ReplayFeed(path)
    (candle,) = feed.fetch_closed_candles("ETHUSDT", "1h", None, 5, FIRST + HOUR)
    assert candle.volume == Decimal("10.123456789")
    with pytest.raises(FeedError, match="holds ETHUSDT 1h, not BTCUSDT 1h"):
        feed.fetch_closed_candles("BTCUSDT", "1h", None, 5, FIRST + HOUR)


def test_replay_names_the_line_of_an_unreadable_number(tmp_path: Path):
    path = tmp_path / "BTCUSDT_1h.csv"
    path.write_text("timestamp_ms,open,high,low,close,volume\n1672531200000,1.5,abc,1,1.75,10\n")
    with pytest.raises(FeedError, match="line 2: high is not a number"):
        ReplayFeed(path).all_candles("BTCUSDT", "1h")


# --------------------------------------------------------------------------------------------------- ccxt


def test_importing_the_feeds_module_does_not_import_ccxt():
    code = "import sys, chalicelib.trading.feeds, chalicelib.trading; print('ccxt' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class FakeBinance:
    """Answers ccxt's HTTP requests the way Binance's REST API would, from the bundled candles.

    ``server_now`` is the exchange's clock: the candle containing it is returned too, still open, as Binance
    does.
    """

    EXCHANGE_INFO = {  # noqa: RUF012
        "timezone": "UTC",
        "serverTime": 0,
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "status": "TRADING",
                "baseAsset": "BTC",
                "baseAssetPrecision": 8,
                "quoteAsset": "USDT",
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [],
                "permissions": ["SPOT"],
                "permissionSets": [["SPOT"]],
            }
        ],
    }

    def __init__(self, server_now: datetime):
        self.server_now = server_now
        self.candles = ReplayFeed().all_candles("BTCUSDT", "1h")
        self.urls: list[str] = []

    def kline(self, c) -> list:
        open_ms = to_epoch_ms(c.open_time)
        # Binance sends prices as 8-decimal strings; the trailing fields are close time, quote volume, ...
        return [
            open_ms,
            f"{c.open:.8f}",
            f"{c.high:.8f}",
            f"{c.low:.8f}",
            f"{c.close:.8f}",
            f"{c.volume:.8f}",
            open_ms + 3_599_999,
            "0",
            1,
            "0",
            "0",
            "0",
        ]

    def fetch(self, url, method="GET", headers=None, body=None):
        self.urls.append(url)
        parsed = urlparse(url)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        if parsed.path.endswith("/exchangeInfo"):
            return self.EXCHANGE_INFO
        assert parsed.path.endswith("/klines"), url
        assert query["symbol"] == "BTCUSDT" and query["interval"] == "1h"
        limit = int(query.get("limit", 500))
        visible = [c for c in self.candles if c.open_time <= self.server_now]
        if "startTime" in query:
            start = int(query["startTime"])
            return [self.kline(c) for c in visible if to_epoch_ms(c.open_time) >= start][:limit]
        return [self.kline(c) for c in visible][-limit:]


def stubbed_feed(server_now: datetime, exchange_id: str = "binance") -> tuple[CcxtFeed, FakeBinance]:
    feed = CcxtFeed(exchange_id, retries=1)
    fake = FakeBinance(server_now)
    feed.exchange.fetch = fake.fetch  # only the HTTP layer: ccxt's own request building and parsing run
    return feed, fake


def test_the_sample_binance_response_parses_through_ccxt_into_exact_decimals():
    feed = CcxtFeed("binance", retries=1)
    feed.exchange.fetch = lambda url, *a, **k: (
        FakeBinance.EXCHANGE_INFO if "exchangeInfo" in url else KLINES_SAMPLE["httpResponse"]
    )
    (candle,) = feed.fetch_closed_candles("BTCUSDT", "1h", None, 1, datetime(2024, 3, 13, 12, tzinfo=UTC))
    assert candle.open_time == datetime(2024, 3, 13, 11, tzinfo=UTC)
    assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == (
        Decimal("73249.24"),
        Decimal("73394.3"),
        Decimal("73234.62"),
        Decimal("73347.62"),
        Decimal("0.23592"),
    )


def test_the_exchange_feed_drops_the_still_open_newest_candle():
    server_now = datetime(2024, 6, 1, 10, 25, tzinfo=UTC)  # the 10:00 candle is still forming
    feed, fake = stubbed_feed(server_now)
    got = feed.fetch_closed_candles("BTCUSDT", "1h", None, 3, server_now)
    assert [c.open_time.hour for c in got] == [7, 8, 9]
    assert "limit=4" in fake.urls[-1]  # asked for one more than needed, because the newest is open


def test_the_exchange_feed_returns_candles_after_since_and_matches_the_recording():
    server_now = datetime(2024, 6, 1, 10, 25, tzinfo=UTC)
    feed, _ = stubbed_feed(server_now)
    since = datetime(2024, 6, 1, 5, tzinfo=UTC)
    got = feed.fetch_closed_candles("BTC/USDT", "1h", since, 500, server_now)
    assert [c.open_time.hour for c in got] == [6, 7, 8, 9]
    expected = ReplayFeed().fetch_closed_candles("BTCUSDT", "1h", since, 500, server_now)
    assert got == expected  # same Decimals as the CSV text, through ccxt's float parsing and back


def test_the_exchange_feed_pages_through_a_long_catch_up():
    server_now = datetime(2024, 6, 1, 10, 25, tzinfo=UTC)
    feed, fake = stubbed_feed(server_now)
    feed.page_size = 100
    since = server_now - timedelta(hours=300)
    got = feed.fetch_closed_candles("BTCUSDT", "1h", since, 250, server_now)
    assert len(got) == 250
    validate_candles(got, "1h", after=since)
    assert sum("klines" in u for u in fake.urls) == 3


@pytest.mark.parametrize("exchange_id", ["binanceus", "kraken", "coinbase"])
def test_other_exchanges_are_chosen_by_configuration(exchange_id):
    feed = CcxtFeed(exchange_id)
    assert feed.exchange.id == exchange_id
    assert feed.exchange.timeout == 10_000


def test_an_unknown_exchange_is_a_one_line_feed_error():
    with pytest.raises(FeedError, match="unknown exchange 'nope'"):
        CcxtFeed("nope").exchange  # noqa: B018


def test_without_network_the_exchange_feed_fails_with_one_line_after_retrying():
    sleeps: list[float] = []
    feed = CcxtFeed("binance", timeout_ms=1500, retries=2, backoff_s=0.01, sleep=sleeps.append)
    # Point every API URL at a closed local port, so the test never depends on DNS or the internet.
    feed.exchange.urls["api"] = {k: "http://127.0.0.1:9/api/v3" for k in feed.exchange.urls["api"]}
    with pytest.raises(FeedError) as info:
        feed.fetch_closed_candles("BTCUSDT", "1h", None, 5, datetime(2024, 6, 1, tzinfo=UTC))
    message = str(info.value)
    assert message.startswith("cannot reach binance: ")
    assert "\n" not in message
    assert sleeps == [0.01]  # two attempts, one backoff in between
    assert info.value.__cause__ is None  # the CLI can print it without a traceback chain


def test_the_exchange_feed_reads_the_lot_step_and_minimums_from_the_markets_filters_through_ccxt():
    """Sizing follows the exchange's LOT_SIZE and NOTIONAL filters (issue 13): ccxt parses Binance's exchangeInfo
    and the feed turns its market structure into exact MarketRules."""
    import copy

    from chalicelib.trading.markets import MarketRules

    info = copy.deepcopy(FakeBinance.EXCHANGE_INFO)
    info["symbols"][0]["filters"] = [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
         "tickSize": "0.01000000"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
    ]
    feed = CcxtFeed("binance", retries=1)
    feed.exchange.fetch = lambda url, *a, **k: info
    assert feed.market_rules("BTC/USDT") == MarketRules(step=Decimal("0.00001"), min_quantity=Decimal("0.00001"),
                                                         min_notional=Decimal(5))
    with pytest.raises(FeedError, match="binance has no market DOGEUSDT"):
        feed.market_rules("DOGEUSDT")


def test_market_rules_from_ccxt_read_decimal_places_and_treat_missing_figures_as_no_limit():
    from chalicelib.trading.feeds import rules_from_ccxt
    from chalicelib.trading.markets import UNRESTRICTED, MarketRules

    tick_size, decimal_places = 4, 2  # ccxt.TICK_SIZE, ccxt.DECIMAL_PLACES
    assert rules_from_ccxt({"precision": {"amount": 3}, "limits": {"amount": {"min": 0.001}, "cost": {"min": 10}}},
                           decimal_places) == MarketRules(Decimal("0.001"), Decimal("0.001"), Decimal(10))
    assert rules_from_ccxt({"precision": {"amount": "0.1"}}, tick_size) == MarketRules(step=Decimal("0.1"))
    assert rules_from_ccxt({}, tick_size) == UNRESTRICTED
    assert rules_from_ccxt({"precision": {"amount": None}, "limits": {"cost": {"min": "nonsense"}}},
                           tick_size) == UNRESTRICTED


def test_the_bundled_replay_trades_under_the_bundled_filters_and_a_users_file_under_none(tmp_path: Path):
    from chalicelib.trading.markets import BUNDLED_RULES, UNRESTRICTED

    assert ReplayFeed(symbol="ETHUSDT").market_rules("ETHUSDT") == BUNDLED_RULES["ETHUSDT"]
    several = ReplayFeed.several(["BTCUSDT", "ETHUSDT"])
    assert [several.market_rules(s) for s in ("BTCUSDT", "ETHUSDT")] == [BUNDLED_RULES["BTCUSDT"],
                                                                        BUNDLED_RULES["ETHUSDT"]]
    own = tmp_path / "BTCUSDT_1h.csv"
    own.write_text("timestamp_ms,open,high,low,close,volume\n1704067200000,1,1,1,1,1\n")
    assert ReplayFeed(own).market_rules("BTCUSDT") == UNRESTRICTED
    with pytest.raises(FeedError, match="this replay holds BTCUSDT, ETHUSDT, not SOLUSDT"):
        several.market_rules("SOLUSDT")
