"""Market data feeds: where closed candles come from.

Every feed answers one question, :meth:`Feed.fetch_closed_candles`: "which candles of SYMBOL/TIMEFRAME newer
than ``since`` are closed at ``now``?" -- oldest first, at most ``limit``, never a still-open candle
(``open_time + timeframe <= now``). With ``since=None`` it returns the most recent ``limit`` closed candles.
``now`` is always passed in, never read from a clock here, so the caller owns time.

* :class:`ReplayFeed` serves a CSV of recorded candles (by default the symbol's bundled
  ``chalicelib/data/SYMBOL_1h.csv.gz``: BTCUSDT or ETHUSDT). Replay has no wall clock:
  :meth:`ReplayFeed.replay_now` turns "reveal the next N candles after the session's cursor" into a ``now``, so
  500 ticks at once or 100 ticks five times reveal the same candles.
* :class:`CcxtFeed` asks an exchange through ccxt (imported lazily on first use, so importing this module
  stays cheap on the API path). Network trouble is retried with backoff and ends as a one-line
  :class:`FeedError`, never a traceback.

Feeds do not validate candles; pass what they return through ``candles.validate_candles``.
"""

from __future__ import annotations

import csv
import gzip
import io
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

from chalicelib.trading.candles import (
    Candle,
    from_epoch_ms,
    timeframe_to_timedelta,
    to_epoch_ms,
)
from chalicelib.trading.markets import UNRESTRICTED, MarketRules, bundled_rules
from chalicelib.trading.symbols import SymbolError, parse_symbol

#: Where the recorded market data shipped with the package lives: ``SYMBOL_TIMEFRAME.csv.gz`` (Binance spot,
#: 1h, 2023-01-01 .. 2025-01-20: BTCUSDT and ETHUSDT).
BUNDLED_DATA = Path(__file__).resolve().parent.parent / "data"
#: The default replay data (BTC/USDT 1h).
BUNDLED_CSV = BUNDLED_DATA / "BTCUSDT_1h.csv.gz"
#: Exchanges known to work by configuration alone (any other ccxt id is tried as-is).
KNOWN_EXCHANGES: tuple[str, ...] = ("binance", "binanceus", "kraken", "coinbase")
_CSV_COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")


class FeedError(RuntimeError):
    """Market data could not be had; ``str(err)`` is one line fit for a log or a terminal."""


class Feed(Protocol):
    """A source of closed candles."""

    def fetch_closed_candles(
        self, symbol: str, timeframe: str, since: datetime | None, limit: int, now: datetime
    ) -> list[Candle]:
        """Closed candles (``open_time + timeframe <= now``) with ``open_time > since``, oldest first.

        At most ``limit`` of them: the oldest ones after ``since``, or the newest ones when ``since`` is None.
        """
        ...


def _select(
    candles: Sequence[Candle], timeframe: str, since: datetime | None, limit: int, now: datetime
) -> list[Candle]:
    """The shared rule of every feed: closed at ``now``, newer than ``since``, at most ``limit``."""
    if limit <= 0:
        return []
    step = timeframe_to_timedelta(timeframe)
    closed = [c for c in candles if c.open_time + step <= now and (since is None or c.open_time > since)]
    return closed[:limit] if since is not None else closed[-limit:]


# --------------------------------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class _Dataset:
    symbol: str
    timeframe: str
    candles: tuple[Candle, ...]
    open_times: tuple[datetime, ...]
    #: non-decreasing times allow bisection; a scrambled file is served as-is, for validation to refuse
    ordered: bool

    def newer_than(self, after: datetime | None) -> int:
        """Index of the first candle opened after ``after`` (0 if the recording is not in order)."""
        if after is None or not self.ordered:
            return 0
        return bisect_right(self.open_times, after)

    def closed_end(self, now: datetime, timeframe: str) -> int:
        """Index just past the last candle closed at ``now``."""
        if not self.ordered:
            return len(self.candles)
        return bisect_right(self.open_times, now - timeframe_to_timedelta(timeframe))


def _parse_decimal(text: str, column: str, line: int, path: Path) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise FeedError(f"{path.name} line {line}: {column} is not a number: {text!r}") from None


def read_candles_csv(path: Path) -> list[Candle]:
    """Read ``timestamp_ms,open,high,low,close,volume`` rows (gzip or plain); numbers parsed from the text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FeedError(f"cannot read candle file {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise FeedError(f"cannot decompress candle file {path}: {exc}") from None
    reader = csv.reader(io.StringIO(raw.decode("utf-8")))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != _CSV_COLUMNS:
        raise FeedError(f"{path.name}: expected header {','.join(_CSV_COLUMNS)}, got {header}")
    candles: list[Candle] = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(_CSV_COLUMNS):
            raise FeedError(f"{path.name} line {line}: expected {len(_CSV_COLUMNS)} columns, got {len(row)}")
        try:
            timestamp_ms = int(row[0])
        except ValueError:
            raise FeedError(f"{path.name} line {line}: timestamp_ms is not an integer: {row[0]!r}") from None
        o, h, lo, c, v = (_parse_decimal(row[i], _CSV_COLUMNS[i], line, path) for i in range(1, 6))
        candles.append(Candle(from_epoch_ms(timestamp_ms), o, h, lo, c, v))
    return candles


def _plain(symbol: str) -> str:
    """``symbol`` as sessions store it (``BTCUSDT``); an unreadable one is a FeedError."""
    try:
        return parse_symbol(symbol).plain
    except SymbolError as exc:
        raise FeedError(str(exc)) from None


def _infer_symbol_timeframe(path: Path) -> tuple[str | None, str | None]:
    """``BTCUSDT_1h.csv.gz`` -> ``("BTCUSDT", "1h")``; a part the name does not tell is None."""
    stem = path.name.split(".")[0]
    head, _, tail = stem.partition("_")
    try:
        symbol: str | None = parse_symbol(head).plain
    except SymbolError:
        symbol = None
    try:
        timeframe_to_timedelta(tail)
    except ValueError:
        return symbol, None
    return symbol, tail


def bundled_csv(symbol: str, timeframe: str = "1h") -> Path:
    """The candles shipped with the package for ``symbol`` and ``timeframe``; FeedError when there are none."""
    plain = _plain(symbol)
    path = BUNDLED_DATA / f"{plain}_{timeframe}.csv.gz"
    if not path.is_file():
        what = plain if timeframe == "1h" else f"{plain} {timeframe}"
        raise FeedError(f"no bundled candles for {what}; pass --data {plain}=FILE")
    return path


class ReplayFeed:
    """Closed candles from a recorded CSV; the caller's ``now`` decides how much of it has "happened".

    Without ``csv_path`` it reads the bundled file for ``symbol`` and ``timeframe`` (BTCUSDT 1h by default) and
    refuses a symbol with no bundled candles. With a path, the symbol and timeframe are read from a file name
    like ``BTCUSDT_1h.csv.gz``; one the name does not tell is taken from the caller, and one that contradicts
    the caller is a FeedError (ETH prices never trade as BTC). The file is read once, on first use.
    """

    def __init__(
        self, csv_path: str | Path | None = None, *, symbol: str | None = None, timeframe: str | None = None,
        rules: MarketRules | None = None,
    ) -> None:
        wanted_symbol = _plain(symbol) if symbol is not None else None
        if csv_path is None:
            self.bundled = True
            self.path = bundled_csv(wanted_symbol or "BTCUSDT", timeframe or "1h")
        else:
            self.path = Path(csv_path)
            self.bundled = self.path.resolve().parent == BUNDLED_DATA  # the bundled file, named by its path
        inferred_symbol, inferred_timeframe = _infer_symbol_timeframe(self.path)
        for what, inferred, wanted in (("symbol", inferred_symbol, wanted_symbol),
                                       ("timeframe", inferred_timeframe, timeframe)):
            if inferred is not None and wanted is not None and inferred != wanted:
                raise FeedError(f"replay data {self.path.name} holds {inferred}, not {wanted} "
                                f"(its name says which {what} it holds)")
        self.symbol = wanted_symbol or inferred_symbol or "BTCUSDT"
        self.timeframe = timeframe or inferred_timeframe or "1h"
        timeframe_to_timedelta(self.timeframe)
        self._data: _Dataset | None = None
        self._label: str | None = None
        #: the bundled recordings trade under the exchange's bundled filters; a user's file under none (unknown)
        self._rules = rules if rules is not None else bundled_rules(self.symbol) if self.bundled else UNRESTRICTED
        #: the other pairs of a several-pair replay (:meth:`several`), by symbol
        self._others: dict[str, ReplayFeed] = {}

    @classmethod
    def several(cls, symbols: Sequence[str], timeframe: str = "1h",
                data: Mapping[str, str | Path] | None = None) -> ReplayFeed:
        """One replay of several pairs over the same hours: each pair's bundled candles, or its file from ``data``
        (``--data SYMBOL=FILE``). Every method takes the symbol and answers from that pair's recording."""
        data = {_plain(k): v for k, v in (data or {}).items()}
        unknown = sorted(set(data) - {_plain(s) for s in symbols})
        if unknown:
            raise FeedError(f"--data names {', '.join(unknown)}, which the bot does not trade")
        feeds = [cls(data.get(_plain(s)), symbol=s, timeframe=timeframe) for s in symbols]
        if not feeds:
            raise FeedError("a replay needs at least one symbol")
        first = feeds[0]
        first._others = {f.symbol: f for f in feeds[1:]}
        return first

    @property
    def symbols(self) -> tuple[str, ...]:
        """The pairs this replay serves, in the order given."""
        return (self.symbol, *self._others)

    def _pair(self, symbol: str) -> ReplayFeed:
        plain = _plain(symbol)
        if plain == self.symbol:
            return self
        other = self._others.get(plain)
        if other is None:
            raise FeedError(f"this replay holds {', '.join(self.symbols)}, not {plain}")
        return other

    def market_rules(self, symbol: str) -> MarketRules:
        """The order filters of ``symbol`` in this replay (``chalicelib.trading.markets``)."""
        return self._pair(symbol)._rules

    @classmethod
    def from_candles(cls, candles: Sequence[Candle], *, symbol: str, timeframe: str, label: str,
                     rules: MarketRules | None = None) -> ReplayFeed:
        """A replay of candles already in memory (a slice of a recording, or a recording with a changed future:
        ``atb check``); ``label`` names them in :meth:`describe`."""
        feed = cls(Path("memory"), symbol=symbol, timeframe=timeframe, rules=rules)
        feed._label = label
        times = tuple(c.open_time for c in candles)
        feed._data = _Dataset(feed.symbol, feed.timeframe, tuple(candles), times,
                              all(a <= b for a, b in pairwise(times)))
        return feed

    def describe(self) -> str:
        """One line for the trader: which candles this replay serves."""
        if self._others:
            return "; ".join(self._pair(s)._describe_one() for s in self.symbols)
        return self._describe_one()

    def _describe_one(self) -> str:
        if self._label is not None:
            return self._label
        where = "bundled " if self.bundled else ""
        return f"replay of {where}{self.symbol} {self.timeframe} candles ({self.path})"

    def _dataset(self, symbol: str, timeframe: str) -> _Dataset:
        if self._others and _plain(symbol) != self.symbol:
            return self._pair(symbol)._dataset(symbol, timeframe)
        if _plain(symbol) != self.symbol or timeframe != self.timeframe:
            raise FeedError(
                f"replay data {self.path.name} holds {self.symbol} {self.timeframe}, not {symbol} {timeframe}"
            )
        if self._data is None:
            candles = tuple(read_candles_csv(self.path))
            open_times = tuple(c.open_time for c in candles)
            ordered = all(a <= b for a, b in pairwise(open_times))
            self._data = _Dataset(self.symbol, self.timeframe, candles, open_times, ordered)
        return self._data

    def all_candles(self, symbol: str, timeframe: str) -> tuple[Candle, ...]:
        """Every recorded candle, oldest first (for backtests and tests)."""
        return self._dataset(symbol, timeframe).candles

    def fetch_closed_candles(
        self, symbol: str, timeframe: str, since: datetime | None, limit: int, now: datetime
    ) -> list[Candle]:
        """See :class:`Feed`."""
        data = self._dataset(symbol, timeframe)
        window = data.candles[data.newer_than(since) : data.closed_end(now, timeframe)]
        return _select(window, timeframe, since, limit, now)

    def reveal_next(self, symbol: str, timeframe: str, after: datetime | None, count: int = 1) -> list[Candle]:
        """The next ``count`` recorded candles after the cursor ``after`` (from the start when None)."""
        if count <= 0:
            return []
        data = self._dataset(symbol, timeframe)
        start = data.newer_than(after)
        if not data.ordered:
            return [c for c in data.candles if after is None or c.open_time > after][:count]
        return list(data.candles[start : start + count])

    def replay_now(self, symbol: str, timeframe: str, after: datetime | None, count: int = 1) -> datetime | None:
        """The replay "now" at which exactly the next ``count`` candles after ``after`` have closed.

        Feed it to :meth:`fetch_closed_candles` (or to the engine's tick) as ``now``. None when the recording
        has nothing after ``after`` (the replay is over). Because "now" is derived from the session's
        cursor and not from a clock, ticks are idempotent: a repeated tick reveals the same candles again.
        """
        revealed = self.reveal_next(symbol, timeframe, after, count)
        if not revealed:
            return None
        return revealed[-1].close_time(timeframe)

    def replay_now_all(self, timeframe: str, after: datetime | None, count: int = 1) -> datetime | None:
        """:meth:`replay_now` over every pair: the earliest "now" at which some pair has revealed ``count`` more
        candles after ``after`` (a several-pair account's cursor is its newest applied candle time). None when
        every recording has ended."""
        nows = [now for s in self.symbols if (now := self.replay_now(s, timeframe, after, count)) is not None]
        return min(nows) if nows else None


# ----------------------------------------------------------------------------------------------------- ccxt


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _network_reason(exc: BaseException) -> str:
    """ccxt says which request failed; the innermost cause says why (e.g. "Name or service not known")."""
    root: BaseException = exc
    seen = {id(exc)}
    while True:
        nxt = root.__cause__ or root.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        root = nxt
    head = _one_line(exc)
    if root is exc:
        return head
    detail = root.strerror if isinstance(root, OSError) and root.strerror else _one_line(root)
    return f"{head} ({detail})"


class CcxtFeed:
    """Closed candles from a live exchange through ccxt's public OHLCV endpoint (no API keys needed).

    ``exchange_id`` is any ccxt id; ``binance``, ``binanceus``, ``kraken`` and ``coinbase`` are the ones this
    project relies on (Binance refuses some regions). ``timeout_ms`` bounds each HTTP request; ``retries`` is
    how many attempts a network failure gets in total (at least one), with exponential backoff from
    ``backoff_s``. ccxt is imported on the first fetch, not when this module is imported.
    """

    #: most candles asked for in one request (Binance allows 1000, Kraken returns at most 720)
    page_size = 500

    def __init__(
        self,
        exchange_id: str = "binance",
        timeout_ms: int = 10_000,
        retries: int = 3,
        *,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.exchange_id = exchange_id.strip().lower()
        self.timeout_ms = timeout_ms
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._exchange: Any = None

    def describe(self) -> str:
        """One line for the trader: where the prices come from."""
        return f"live {self.exchange_id} prices via ccxt"

    @property
    def exchange(self) -> Any:
        """The ccxt exchange object, created on first use and reused (markets are loaded once)."""
        if self._exchange is None:
            try:
                import ccxt
            except ImportError:  # pragma: no cover - ccxt is a runtime dependency
                raise FeedError("the exchange feed needs ccxt, which is not installed") from None
            exchange_class = getattr(ccxt, self.exchange_id, None)
            if exchange_class is None or not isinstance(exchange_class, type):
                known = ", ".join(KNOWN_EXCHANGES)
                raise FeedError(f"unknown exchange {self.exchange_id!r} (try one of {known})")
            config: dict[str, Any] = {"timeout": self.timeout_ms, "enableRateLimit": True}
            if self.exchange_id.startswith("binance"):
                # Spot only: skip the futures market lists (fewer requests, fewer ways to fail).
                config["options"] = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}}
            self._exchange = exchange_class(config)
        return self._exchange

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one ccxt call with retries on network errors; every failure ends as one-line FeedError."""
        import ccxt

        delay = self.backoff_s
        for attempt in range(1, self.retries + 1):
            try:
                return fn()
            except ccxt.NetworkError as exc:  # timeouts, DNS, refused connections, 5xx, rate limits
                if attempt >= self.retries:
                    raise FeedError(f"cannot reach {self.exchange_id}: {_network_reason(exc)}") from None
                self._sleep(delay)
                delay *= 2
            except ccxt.BaseError as exc:  # bad symbol, unsupported timeframe, exchange-side refusal
                raise FeedError(f"{self.exchange_id} refused {what}: {_one_line(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def market_rules(self, symbol: str) -> MarketRules:
        """The exchange's lot step, minimum quantity and minimum notional for ``symbol``, from ccxt's market data
        (loaded once); a figure the exchange does not publish is no limit."""
        exchange = self.exchange
        self._call("loading markets", exchange.load_markets)
        try:
            market = exchange.market(parse_symbol(symbol).ccxt)
        except Exception as exc:  # ccxt.BadSymbol and friends: one line, like every feed failure
            raise FeedError(f"{self.exchange_id} has no market {symbol}: {_one_line(exc)}") from None
        return rules_from_ccxt(market, exchange.precisionMode)

    def _fetch_page(self, market: str, timeframe: str, since_ms: int | None, limit: int) -> list[list[Any]]:
        exchange = self.exchange
        self._call("loading markets", exchange.load_markets)
        if not exchange.has.get("fetchOHLCV"):
            raise FeedError(f"{self.exchange_id} does not serve OHLCV candles")
        if timeframe not in (exchange.timeframes or {}):
            raise FeedError(f"{self.exchange_id} has no {timeframe} candles")
        result = self._call(
            f"candles for {market} {timeframe}",
            lambda: exchange.fetch_ohlcv(market, timeframe, since=since_ms, limit=limit),
        )
        if not isinstance(result, list):
            raise FeedError(f"{self.exchange_id} answered candles with {type(result).__name__}, not a list")
        return result

    def fetch_closed_candles(
        self, symbol: str, timeframe: str, since: datetime | None, limit: int, now: datetime
    ) -> list[Candle]:
        """See :class:`Feed`. The newest kline an exchange returns is usually still open; it is dropped."""
        if limit <= 0:
            return []
        try:
            market = parse_symbol(symbol).ccxt
        except SymbolError as exc:
            raise FeedError(str(exc)) from None
        step = timeframe_to_timedelta(timeframe)
        if since is None:
            # One request for the newest candles; one extra because the last is probably still open.
            rows = self._fetch_page(market, timeframe, None, min(limit + 1, self.page_size + 1))
            return _select(list(self._to_candles(rows)), timeframe, None, limit, now)
        collected: list[Candle] = []
        cursor = since
        while len(collected) < limit:
            page = min(limit - len(collected) + 1, self.page_size)
            rows = self._fetch_page(market, timeframe, to_epoch_ms(cursor) + 1, page)
            fresh = _select(list(self._to_candles(rows)), timeframe, cursor, page, now)
            if not fresh:
                break
            collected.extend(fresh)
            cursor = fresh[-1].open_time
            if cursor + step + step > now:  # the next candle is not closed yet
                break
        return collected[:limit]

    def _to_candles(self, rows: list[list[Any]]) -> Iterator[Candle]:
        for row in rows:
            try:
                timestamp_ms = int(row[0])
                o, h, lo, c, v = (Decimal(str(x)) if x is not None else Decimal(0) for x in row[1:6])
            except (TypeError, ValueError, IndexError, InvalidOperation):
                raise FeedError(f"{self.exchange_id} sent an unreadable candle: {row!r}"[:240]) from None
            yield Candle(from_epoch_ms(timestamp_ms), o, h, lo, c, v)


#: ccxt's precision modes (``ccxt.base.decimal_to_precision``): a step size, or a number of decimal places.
_CCXT_TICK_SIZE, _CCXT_DECIMAL_PLACES = 4, 2


def rules_from_ccxt(market: Mapping[str, Any], precision_mode: int) -> MarketRules:
    """:class:`MarketRules` from one ccxt market structure (``precision.amount``, ``limits.amount.min``,
    ``limits.cost.min``)."""

    def number(value: Any) -> Decimal | None:
        if value is None:
            return None
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            return None
        return result if result.is_finite() and result >= 0 else None

    amount = number((market.get("precision") or {}).get("amount"))
    if amount is not None and precision_mode == _CCXT_DECIMAL_PLACES:
        amount = Decimal(1).scaleb(-int(amount))
    limits = market.get("limits") or {}
    min_quantity = number((limits.get("amount") or {}).get("min")) or Decimal(0)
    min_notional = number((limits.get("cost") or {}).get("min")) or Decimal(0)
    step = amount if amount is not None and amount > 0 else UNRESTRICTED.step
    return MarketRules(step=max(step, UNRESTRICTED.step), min_quantity=min_quantity, min_notional=min_notional)
