"""Every asset valued in the account's currency (USD): the marks, the asset breakdown and the exposure.

Pure arithmetic, no database. One wallet trades several pairs; each pair has a **mark**: the close of its newest
applied candle *in US dollars* and that candle's open time (the pair's own cursor). How a pair's prices become
dollars is decided once, when its candles come in (:func:`to_account_currency`):

* a pair quoted in USD or a USD stablecoin (USDT, USDC, BUSD, FDUSD, TUSD) counts 1:1: a stablecoin is taken to be
  worth exactly one dollar (a depeg is not modelled);
* any other quote (ETHBTC) is converted through a conversion pair the bot also reads (BTCUSDT): each candle's
  open, high, low and close × the conversion pair's close at the same candle time, at the money scale. A candle
  without its conversion candle waits (it is applied once both are there). The converted high and low bound the
  true dollar range only approximately (the two markets need not peak together); the close is exact;
* a pair with no conversion pair is refused, with the pair to add named (:func:`conversion_pair`).

So a position's value is always quantity × its pair's mark, equity = cash + Σ position values exactly, and the
breakdown, exposure and risk caps all read the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from chalicelib.money import ZERO, quantize_money
from chalicelib.trading.candles import Candle
from chalicelib.trading.symbols import Symbol, parse_symbol

ACCOUNT_CURRENCY = "USD"
_SHARE = Decimal("0.000001")  # shares of equity: 6 decimal places (0.0001 %)


class ValuationError(ValueError):
    """A pair that cannot be valued in dollars; ``str(err)`` is one line that says what to add."""


@dataclass(frozen=True, slots=True)
class Mark:
    """A pair's newest applied candle: its close in US dollars and its open time (the pair's cursor)."""

    close: Decimal
    cursor: datetime


def conversion_pair(symbol: str | Symbol, symbols: Iterable[str]) -> str | None:
    """The pair among ``symbols`` that prices ``symbol``'s quote in dollars (``BTCUSDT`` for ``ETHBTC``); None for a
    USD-quoted pair. :class:`ValuationError` when the quote is not USD and no such pair is there."""
    pair = parse_symbol(str(symbol))
    if pair.usd_quoted:
        return None
    plain = {parse_symbol(s).plain: parse_symbol(s) for s in symbols}
    for candidate in plain.values():
        if candidate.base == pair.quote and candidate.usd_quoted:
            return candidate.plain
    raise ValuationError(f"{pair.plain} is quoted in {pair.quote}, which is not USD: add a {pair.quote}/USD pair "
                         f"(like {pair.quote}USDT) to the bot's symbols to value it")


def priced_as(symbol: str, symbols: Iterable[str]) -> str:
    """How ``symbol``'s price becomes dollars, in words (shown beside the breakdown)."""
    pair = parse_symbol(symbol)
    if pair.quote == ACCOUNT_CURRENCY:
        return f"{pair.plain} close in USD"
    if pair.usd_quoted:
        return f"{pair.plain} close; {pair.quote} counted 1:1 as USD"
    via = conversion_pair(pair, symbols)
    return f"{pair.plain} close × {via} close"


def to_account_currency(candles: Mapping[str, Sequence[Candle]],
                        symbols: Iterable[str] | None = None) -> dict[str, list[Candle]]:
    """Every pair's candles in dollars: USD-quoted pairs as they are, others × their conversion pair's close at the
    same open time. A candle whose conversion candle is missing (the conversion pair's data is late or failed) is
    left out: it waits. ``symbols`` are all the bot's pairs (default: those in ``candles``)."""
    pairs = list(symbols) if symbols is not None else list(candles)
    out: dict[str, list[Candle]] = {}
    for symbol, series in candles.items():
        via = conversion_pair(symbol, pairs)
        if via is None:
            out[symbol] = list(series)
            continue
        rates = {c.open_time: c.close for c in candles.get(via, ())}
        out[symbol] = [_converted(c, rates[c.open_time]) for c in series if c.open_time in rates]
    return out


def _converted(candle: Candle, rate: Decimal) -> Candle:
    return Candle(candle.open_time, quantize_money(candle.open * rate), quantize_money(candle.high * rate),
                  quantize_money(candle.low * rate), quantize_money(candle.close * rate), candle.volume)


def share(value: Decimal, equity: Decimal) -> Decimal | None:
    """``value`` as a fraction of ``equity`` (6 decimals); None when the account has no equity."""
    if equity <= 0:
        return None
    return (value / equity).quantize(_SHARE)


@dataclass(frozen=True, slots=True)
class Holding:
    """What an open position contributes: its pair, base asset, signed quantity (a short is negative) and value."""

    symbol: str
    asset: str
    quantity: Decimal
    value: Decimal


def holdings(positions: Iterable[tuple[str, str, Decimal, Decimal]], marks: Mapping[str, Mark]) -> list[Holding]:
    """The open positions ``(symbol, side, quantity, cost)`` held per pair and side, valued at the pair's mark:
    Σ quantity × mark, rounded once to the money scale (half-even), so the values sum to what equity adds to cash
    exactly and a ledger row's quantities per asset revalue to the same figure. A pair with no mark yet (no candle
    applied since the position was recorded) is valued at cost. In first-seen order."""
    held: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for symbol, side, quantity, cost in positions:
        q, c = held.get((symbol, side), (ZERO, ZERO))
        held[(symbol, side)] = (q + quantity, c + cost)
    out = []
    for (symbol, side), (quantity, cost) in held.items():
        mark = marks.get(symbol)
        sign = 1 if side == "long" else -1
        value = quantize_money(quantity * mark.close) if mark is not None else cost
        out.append(Holding(symbol, parse_symbol(symbol).base, sign * quantity, sign * value))
    return out


def positions_value(items: Iterable[Holding]) -> Decimal:
    """Σ position values: what equity adds to cash."""
    return sum((h.value for h in items), ZERO)


@dataclass(frozen=True, slots=True)
class AssetLine:
    """One line of the asset breakdown, in the account's currency at the last close."""

    asset: str
    quantity: Decimal
    price: Decimal
    value: Decimal
    share_of_equity: Decimal | None
    priced_as: str


def breakdown(cash: Decimal, items: Sequence[Holding], marks: Mapping[str, Mark],
              symbols: Sequence[str]) -> list[AssetLine]:
    """Cash (USD, first) and every asset held, summed over the positions in it; value = Σ quantity × mark, and the
    values sum to equity exactly. An asset's price is the mark of the first of its pairs in the bot's order."""
    equity = cash + positions_value(items)
    lines = [AssetLine(ACCOUNT_CURRENCY, cash, Decimal(1), cash, share(cash, equity), "cash, USD")]
    for asset in _assets(items):
        mine = [h for h in items if h.asset == asset]
        symbol = next((s for s in symbols if any(h.symbol == s for h in mine)), mine[0].symbol)
        value = positions_value(mine)
        price = marks[symbol].close if symbol in marks else ZERO
        lines.append(AssetLine(asset, sum((h.quantity for h in mine), ZERO), price, value, share(value, equity),
                               priced_as(symbol, symbols or [symbol])))
    return lines


def _assets(items: Sequence[Holding]) -> list[str]:
    """The assets held, by name: the bot's own order, since a bot keeps its pairs alphabetically and a pair's name
    begins with its asset's."""
    return sorted({h.asset for h in items})


@dataclass(frozen=True, slots=True)
class ExposureLine:
    """Exposure to one asset (or, with asset ``total``, the whole wallet): gross = Σ |value|, net = Σ signed value,
    each also as a share of equity. Long-only spot trading makes them equal; they part once shorts exist."""

    asset: str
    gross: Decimal
    net: Decimal
    gross_share: Decimal | None
    net_share: Decimal | None


def exposure(cash: Decimal, items: Sequence[Holding]) -> list[ExposureLine]:
    """Per asset held (by name: the bot's order), then the total."""
    equity = cash + positions_value(items)
    lines = []
    for asset in _assets(items):
        mine = [h for h in items if h.asset == asset]
        lines.append(_exposure_line(asset, mine, equity))
    lines.append(_exposure_line("total", list(items), equity))
    return lines


def _exposure_line(asset: str, items: Sequence[Holding], equity: Decimal) -> ExposureLine:
    gross = sum((abs(h.value) for h in items), ZERO)
    net = sum((h.value for h in items), ZERO)
    return ExposureLine(asset, gross, net, share(gross, equity), share(net, equity))


def gross_exposure(items: Iterable[Holding]) -> Decimal:
    """Σ |position value|: the wallet's gross exposure (what the total-exposure cap limits)."""
    return sum((abs(h.value) for h in items), ZERO)


def asset_exposure(items: Iterable[Holding], asset: str) -> Decimal:
    """Σ |position value| in one base asset (what the per-asset cap limits)."""
    return sum((abs(h.value) for h in items if h.asset == asset), ZERO)
