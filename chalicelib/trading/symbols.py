"""The one symbol parser: ``BTCUSDT``, ``btc/usdt``, ``BTC-USDT`` and ``BTC_USDT`` are all ``Symbol("BTC", "USDT")``.

A symbol without a separator is split at the longest known quote it ends with (``BTCTUSD`` is BTC/TUSD, not
BTCT/USD). Sessions store :attr:`Symbol.plain` (``BTCUSDT``); ccxt is asked for :attr:`Symbol.ccxt`
(``BTC/USDT``). Whether a pair's prices are dollars (:attr:`Symbol.usd_quoted`), or how they become dollars, is
``chalicelib.valuation``'s rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: Quote assets recognised when splitting ``BTCUSDT``; the longest match wins.
KNOWN_QUOTES: tuple[str, ...] = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "GBP", "BTC", "ETH", "BNB")
#: Quotes whose prices are US dollars (the account's currency).
USD_QUOTES: frozenset[str] = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD"})
_ASSET = re.compile(r"[A-Z0-9]{1,20}")
_SEPARATORS = re.compile(r"[/\-_]")


class SymbolError(ValueError):
    """A symbol that cannot be read or is not supported; ``str(err)`` is one line."""


@dataclass(frozen=True, slots=True)
class Symbol:
    base: str
    quote: str

    @property
    def plain(self) -> str:
        """``BTCUSDT``: how sessions store it."""
        return f"{self.base}{self.quote}"

    @property
    def ccxt(self) -> str:
        """``BTC/USDT``: how ccxt names the market."""
        return f"{self.base}/{self.quote}"

    @property
    def usd_quoted(self) -> bool:
        return self.quote in USD_QUOTES

    def __str__(self) -> str:
        return self.plain


def parse_symbol(text: str) -> Symbol:
    """Read ``BTCUSDT``, ``BTC/USDT``, ``btc-usdt`` or ``BTC_USDT``; :class:`SymbolError` otherwise."""
    cleaned = str(text).strip().upper()
    shown = repr(str(text).strip())
    if not cleaned:
        raise SymbolError("symbol must not be empty: write it like BTCUSDT or BTC/USDT")
    parts = _SEPARATORS.split(cleaned)
    if len(parts) == 2:
        base, quote = parts
    elif len(parts) == 1:
        quote = next((q for q in sorted(KNOWN_QUOTES, key=len, reverse=True)
                      if cleaned.endswith(q) and len(cleaned) > len(q)), "")
        if not quote:
            raise SymbolError(f"cannot read symbol {shown}: it ends in no known quote "
                              f"({', '.join(KNOWN_QUOTES)}); write it like BTCUSDT or BTC/USDT")
        base = cleaned[: -len(quote)]
    else:
        raise SymbolError(f"cannot read symbol {shown}: write it like BTCUSDT or BTC/USDT")
    if not _ASSET.fullmatch(base) or not _ASSET.fullmatch(quote):
        raise SymbolError(f"cannot read symbol {shown}: base and quote must be letters or digits, "
                          "like BTCUSDT or BTC/USDT")
    if base == quote:
        raise SymbolError(f"cannot read symbol {shown}: base and quote are the same asset")
    return Symbol(base, quote)


#: How a bot's pairs are kept in one text column (``trading_sessions.symbol``, ``bots.symbol``): ``BTCUSDT,ETHUSDT``.
_PAIRS_SEPARATOR = ","


def join_pairs(symbols: Iterable[str]) -> str:
    """A bot's pairs (plain, in its fixed order) as they are stored: ``BTCUSDT,ETHUSDT``."""
    return _PAIRS_SEPARATOR.join(symbols)


def split_pairs(stored: str) -> tuple[str, ...]:
    """The pairs of a stored ``BTCUSDT,ETHUSDT``, in their order (the inverse of :func:`join_pairs`)."""
    return tuple(stored.split(_PAIRS_SEPARATOR))
