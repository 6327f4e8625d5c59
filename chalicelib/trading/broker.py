"""Paper broker: how simulated orders fill, what they cost, and when a stop or target closes a position.

Rules (long-only spot):

* **Market orders** (entries and strategy exits) fill at the deciding candle's close, moved against us by
  ``slippage_bps`` basis points: buys at ``close * (1 + bps/10000)``, sells at ``close * (1 - bps/10000)``.
* **Fees**: ``fee_rate`` (taker, default 0.1%) of each fill's notional, charged separately from P&L.
* **Stops and targets** are checked on every candle AFTER the entry candle, against its open/high/low:

  1. ``open <= stop``  -> the market gapped through the stop: fill at the OPEN (worse than the stop);
  2. ``open >= target`` -> gapped above the target: fill at the OPEN (better than the target);
  3. ``low <= stop``   -> stop hit at the stop price; this wins even if the high also reached the target,
     because within one candle we cannot know which came first and the cautious answer is the loss;
  4. ``high >= target`` -> target hit at the target price.

  A stop is a stop-market order, so its fill also pays slippage; a take-profit is a resting limit order and
  fills at its price (or the better gap open) with no slippage.
* **P&L**: ``gross = (exit - entry) * quantity``; fees are reported beside it, ``net = gross - fees``.

Every amount is a Decimal quantised with ``chalicelib.money`` (prices and cash to 8 places, half-even).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from chalicelib.money import quantize_money
from chalicelib.trading.candles import Candle
from chalicelib.trading.position import PositionView

DEFAULT_FEE_RATE = Decimal("0.001")  # 0.1% taker fee
DEFAULT_SLIPPAGE_BPS = Decimal(5)  # 0.05% against us on market fills
_BPS = Decimal(10_000)

ExitReason = Literal["stop_loss", "take_profit", "strategy_exit"]


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Fill costs; both are fractions/basis points as Decimals, never floats."""

    fee_rate: Decimal = DEFAULT_FEE_RATE
    slippage_bps: Decimal = DEFAULT_SLIPPAGE_BPS

    def __post_init__(self) -> None:
        if not (self.fee_rate.is_finite() and Decimal(0) <= self.fee_rate < 1):
            raise ValueError(f"fee_rate must be in [0, 1), got {self.fee_rate}")
        if not (self.slippage_bps.is_finite() and Decimal(0) <= self.slippage_bps < _BPS):
            raise ValueError(f"slippage_bps must be in [0, 10000), got {self.slippage_bps}")


@dataclass(frozen=True, slots=True)
class Fill:
    """One simulated execution."""

    price: Decimal
    quantity: Decimal
    notional: Decimal  # price * quantity, quantised to money
    fee: Decimal


@dataclass(frozen=True, slots=True)
class ExitSignal:
    """A stop or target triggered by a candle: the price the order fills at before slippage, and why."""

    price: Decimal
    reason: ExitReason
    gapped: bool  # True when the candle opened beyond the level and the fill is at the open


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """The money of one round trip."""

    gross_pnl: Decimal  # (exit - entry) * quantity
    entry_fee: Decimal
    exit_fee: Decimal

    @property
    def fees(self) -> Decimal:
        return self.entry_fee + self.exit_fee

    @property
    def net_pnl(self) -> Decimal:
        return self.gross_pnl - self.fees


def fee_for(notional: Decimal, fee_rate: Decimal = DEFAULT_FEE_RATE) -> Decimal:
    """The taker fee on a fill of ``notional``: ``notional * fee_rate``, quantised to money."""
    return quantize_money(notional * fee_rate)


def buy_price(reference: Decimal, slippage_bps: Decimal = DEFAULT_SLIPPAGE_BPS) -> Decimal:
    """A market buy pays a little more than the reference price."""
    return quantize_money(reference * (1 + slippage_bps / _BPS))


def sell_price(reference: Decimal, slippage_bps: Decimal = DEFAULT_SLIPPAGE_BPS) -> Decimal:
    """A market sell receives a little less than the reference price."""
    return quantize_money(reference * (1 - slippage_bps / _BPS))


def _fill(price: Decimal, quantity: Decimal, config: BrokerConfig) -> Fill:
    if quantity <= 0:
        raise ValueError(f"cannot fill a quantity of {quantity}")
    notional = quantize_money(price * quantity)
    return Fill(price=price, quantity=quantity, notional=notional, fee=fee_for(notional, config.fee_rate))


def market_buy(candle: Candle, quantity: Decimal, config: BrokerConfig | None = None) -> Fill:
    """Enter at the deciding candle's close plus slippage."""
    config = config or BrokerConfig()
    return _fill(buy_price(candle.close, config.slippage_bps), quantity, config)


def market_sell(candle: Candle, quantity: Decimal, config: BrokerConfig | None = None) -> Fill:
    """Exit on the strategy's word at the deciding candle's close minus slippage."""
    config = config or BrokerConfig()
    return _fill(sell_price(candle.close, config.slippage_bps), quantity, config)


def check_exit(position: PositionView, candle: Candle) -> ExitSignal | None:
    """Did this candle trigger the position's stop loss or take profit? See the module rules for the order.

    Candles at or before the entry candle (``position.opened_at``) never trigger: the entry filled at that
    candle's close, so its high and low happened before the position existed.
    """
    if candle.open_time <= position.opened_at:
        return None
    stop, target = position.stop_loss, position.take_profit
    if candle.open <= stop:
        return ExitSignal(price=candle.open, reason="stop_loss", gapped=True)
    if candle.open >= target:
        return ExitSignal(price=candle.open, reason="take_profit", gapped=True)
    if candle.low <= stop:
        return ExitSignal(price=stop, reason="stop_loss", gapped=False)
    if candle.high >= target:
        return ExitSignal(price=target, reason="take_profit", gapped=False)
    return None


def exit_fill(position: PositionView, signal: ExitSignal, config: BrokerConfig | None = None) -> Fill:
    """Fill a triggered stop (stop-market: slippage applies) or target (limit: no slippage)."""
    config = config or BrokerConfig()
    if signal.reason == "take_profit":
        price = quantize_money(signal.price)
    else:
        price = sell_price(signal.price, config.slippage_bps)
    return _fill(price, position.quantity, config)


def gross_pnl(entry_price: Decimal, exit_price: Decimal, quantity: Decimal) -> Decimal:
    """Long P&L before fees: ``(exit - entry) * quantity``, quantised to money."""
    return quantize_money((exit_price - entry_price) * quantity)


def close_trade(position: PositionView, sell: Fill, entry_fee: Decimal) -> ClosedTrade:
    """Settle a round trip: gross P&L from the prices, fees alongside (``net_pnl = gross - fees``)."""
    return ClosedTrade(
        gross_pnl=gross_pnl(position.entry_price, sell.price, sell.quantity),
        entry_fee=entry_fee,
        exit_fee=sell.fee,
    )
