"""What a bot is, validated once: every path that creates or resumes a bot (``atb live``, ``atb sessions start``,
``ATB_BOTS``, ``atb backtest``) builds a :class:`BotSpec`, and a bad definition fails here with one
:class:`BotDefinitionError` line before anything is read or written.

A bot is identified by (symbol, timeframe, exchange, mode): another exchange is another bot, never mixed prices.
The strategy is an attribute of the bot. The checks:

* strategy: registered (``chalicelib.trading.strategies``);
* timeframe: one the candles support (``chalicelib.trading.candles``);
* symbols: one or several (``BTCUSDT``, ``BTCUSDT,ETHUSDT`` or ``BTCUSDT+ETHUSDT``), each read by the one parser
  (``chalicelib.trading.symbols``) and quoted in USD, a USD stablecoin, or a currency another of the bot's pairs
  prices in dollars (ETHBTC beside BTCUSDT: ``chalicelib.valuation``); stored comma-joined in the bot's fixed
  order (alphabetical: ``BTCUSDT,ETHUSDT``), which is also the order a tick applies candles of the same time in;
* exchange: lower case; ``replay`` (recorded candles), one of the exchanges this project relies on, or any
  other id ccxt knows (ccxt is imported only to check such an unusual id, never on the common path);
* mode: ``paper`` (real-money trading is not implemented).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from chalicelib.states import Mode
from chalicelib.trading.candles import UnsupportedTimeframeError, timeframe_to_timedelta
from chalicelib.trading.feeds import KNOWN_EXCHANGES
from chalicelib.trading.strategies import UnknownStrategyError, require_strategy
from chalicelib.trading.symbols import SymbolError, join_pairs, parse_symbol, split_pairs
from chalicelib.valuation import ValuationError, conversion_pair

#: The exchange id of bots that trade recorded candles (replay, backtests).
REPLAY = "replay"
MODES: tuple[Mode, ...] = ("paper",)  # of states.MODES, the ones implemented
#: The most symbols one bot trades from its wallet.
MAX_SYMBOLS = 20
_SYMBOL_SEPARATORS = re.compile(r"[,+\s]+")


class BotDefinitionError(ValueError):
    """A bot definition that cannot run; ``str(err)`` is one line that says why."""


def _known_to_ccxt(exchange: str) -> bool:
    try:
        import ccxt
    except ImportError:  # pragma: no cover - ccxt is a runtime dependency
        return False
    return exchange in getattr(ccxt, "exchanges", ())


def normalise_exchange(exchange: str) -> str:
    """``exchange`` in lower case if a bot may use it; :class:`BotDefinitionError` otherwise."""
    name = str(exchange).strip().lower()
    if not name:
        raise BotDefinitionError("exchange must not be empty")
    if name == REPLAY or name in KNOWN_EXCHANGES or _known_to_ccxt(name):
        return name
    raise BotDefinitionError(
        f"unknown exchange {name!r} (use {REPLAY}, {', '.join(KNOWN_EXCHANGES)} or another ccxt exchange id)"
    )


@dataclass(frozen=True)
class BotSpec:
    """A validated bot: strategy × symbol × timeframe × exchange × mode. Construction is validation."""

    strategy: str
    symbol: str
    timeframe: str = "1h"
    exchange: str = "binance"
    mode: str = "paper"

    def __post_init__(self) -> None:
        strategy = str(self.strategy).strip()
        if not strategy:
            raise BotDefinitionError("strategy must not be empty")
        try:
            require_strategy(strategy)
        except UnknownStrategyError as exc:
            raise BotDefinitionError(str(exc)) from None
        try:
            timeframe_to_timedelta(self.timeframe)
        except UnsupportedTimeframeError as exc:
            raise BotDefinitionError(str(exc)) from None
        symbols = parse_symbols(self.symbol)
        if self.mode not in MODES:
            raise BotDefinitionError("live trading is not implemented: this bot only paper-trades")
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "symbol", join_pairs(symbols))
        object.__setattr__(self, "exchange", normalise_exchange(self.exchange))

    @classmethod
    def parse(cls, text: str) -> BotSpec:
        """``"ml_basic:BTCUSDT:1h:binanceus"`` (timeframe and exchange optional), as in ``ATB_BOTS``; several
        symbols are joined with ``+`` (``ml_basic:BTCUSDT+ETHUSDT:1h``)."""
        parts = [p.strip() for p in text.strip().split(":")]
        if len(parts) < 2 or len(parts) > 4 or not all(parts):
            raise BotDefinitionError(f"cannot read bot {text.strip()!r}: "
                                     "expected STRATEGY:SYMBOL[:TIMEFRAME[:EXCHANGE]]")
        strategy, symbol, *rest = parts
        timeframe = rest[0] if rest else "1h"
        exchange = rest[1] if len(rest) > 1 else "binance"
        try:
            return cls(strategy=strategy, symbol=symbol, timeframe=timeframe, exchange=exchange)
        except BotDefinitionError as exc:
            raise BotDefinitionError(f"bot {text.strip()!r}: {exc}") from None

    @property
    def symbols(self) -> tuple[str, ...]:
        """The bot's symbols in its fixed order."""
        return split_pairs(self.symbol)

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes two definitions the same bot: (symbol, timeframe, exchange, mode)."""
        return (self.symbol, self.timeframe, self.exchange, self.mode)

    @property
    def label(self) -> str:
        return f"{self.strategy} {self.symbol} {self.timeframe} {self.mode}"


def parse_symbols(text: str | Iterable[str]) -> tuple[str, ...]:
    """A bot's symbols from ``BTCUSDT``, ``BTCUSDT,ETHUSDT``, ``BTCUSDT+ETHUSDT`` or a list of them: each read by the
    one parser, duplicates dropped, in the fixed (alphabetical) order; every quote valued in dollars."""
    items = [text] if isinstance(text, str) else list(text)
    parts = [p for item in items for p in _SYMBOL_SEPARATORS.split(str(item).strip()) if p]
    if not parts:
        raise BotDefinitionError("symbol must not be empty: write it like BTCUSDT or BTC/USDT")
    try:
        symbols = tuple(sorted({parse_symbol(p).plain for p in parts}))
    except SymbolError as exc:
        raise BotDefinitionError(str(exc)) from None
    if len(symbols) > MAX_SYMBOLS:
        raise BotDefinitionError(f"a bot trades at most {MAX_SYMBOLS} symbols, not {len(symbols)}")
    try:
        for symbol in symbols:
            conversion_pair(symbol, symbols)
    except ValuationError as exc:
        raise BotDefinitionError(str(exc)) from None
    return symbols


def bot_entries(text: str) -> list[str]:
    """The entries of a comma-separated bot list (``ATB_BOTS``), blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_bots(text: str) -> list[BotSpec]:
    """Every bot of a comma-separated list; the first bad entry raises :class:`BotDefinitionError`."""
    return [BotSpec.parse(entry) for entry in bot_entries(text)]
