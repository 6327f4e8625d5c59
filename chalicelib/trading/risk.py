"""Risk rules across the wallet: how big a new position may be, and when the account must stop opening new ones.

Sizing (all from the account's *current* equity E — cash plus every open position marked at its pair's last close,
never the initial capital):

* **position cap** -- the entry notional is at most ``max_position_fraction`` (default 10%) of equity:
  ``qty <= E * fraction / entry``;
* **risk cap** -- if the stop is hit, the loss (before fees) is at most ``risk_per_trade`` (default 2%) of equity:
  ``qty <= E * risk / (entry - stop)``;
* **exposure cap** -- all open positions together (gross, marked) stay within ``max_total_exposure`` (default 50%)
  of equity: ``qty <= (E * cap - exposure) / entry``;
* **asset cap** -- the positions in this pair's base asset stay within ``max_asset_exposure`` (default 25%) of
  equity: ``qty <= (E * cap - asset exposure) / entry``;
* **cash cap** -- notional plus the entry fee fits in the available cash:
  ``qty <= available / (entry * (1 + fee_rate))``.

The quantity is the smallest of these, rounded DOWN to the market's lot step (``chalicelib.trading.markets``; so
rounding can never spend more than allowed); below the market's minimum quantity or notional it is zero. Zero means
"do not trade". A pair holds at most ``max_positions_per_symbol`` open positions (default 1).

Drawdown is ``chalicelib.accounting.drawdown``: ``1 - value / peak``, on the value per unit and its peak (persisted
with the account, so it survives restarts; capital flows never move it). Once it reaches the limit (default 20%)
the account may only close positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from chalicelib.accounting import drawdown
from chalicelib.money import quantize_quantity
from chalicelib.trading.broker import DEFAULT_FEE_RATE
from chalicelib.trading.markets import UNRESTRICTED, MarketRules

DEFAULT_MAX_POSITION_FRACTION = Decimal("0.10")
DEFAULT_RISK_PER_TRADE = Decimal("0.02")
DEFAULT_MAX_DRAWDOWN = Decimal("0.20")
DEFAULT_MAX_TOTAL_EXPOSURE = Decimal("0.50")
DEFAULT_MAX_ASSET_EXPOSURE = Decimal("0.25")
ZERO = Decimal(0)

Binding = Literal["position_cap", "risk_cap", "exposure_cap", "asset_cap", "cash_cap", "min_order", "none"]


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Fractions of equity, as Decimals, and how many positions one pair may hold."""

    max_position_fraction: Decimal = DEFAULT_MAX_POSITION_FRACTION
    risk_per_trade: Decimal = DEFAULT_RISK_PER_TRADE
    max_drawdown: Decimal = DEFAULT_MAX_DRAWDOWN
    max_total_exposure: Decimal = DEFAULT_MAX_TOTAL_EXPOSURE
    max_asset_exposure: Decimal = DEFAULT_MAX_ASSET_EXPOSURE
    max_positions_per_symbol: int = 1

    def __post_init__(self) -> None:
        for name in ("max_position_fraction", "risk_per_trade", "max_drawdown", "max_total_exposure",
                     "max_asset_exposure"):
            value = getattr(self, name)
            if not (value.is_finite() and ZERO < value <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if not (isinstance(self.max_positions_per_symbol, int) and self.max_positions_per_symbol >= 1):
            raise ValueError(f"max_positions_per_symbol must be a whole number ≥ 1, got "
                             f"{self.max_positions_per_symbol}")


@dataclass(frozen=True, slots=True)
class Sizing:
    """The quantity to buy and which cap decided it (for the tick log)."""

    quantity: Decimal
    binding: Binding


def size_position(
    equity: Decimal,
    available: Decimal,
    entry_price: Decimal,
    stop_loss: Decimal,
    *,
    fee_rate: Decimal = DEFAULT_FEE_RATE,
    config: RiskConfig | None = None,
    exposure: Decimal = ZERO,
    asset_exposure: Decimal = ZERO,
    rules: MarketRules = UNRESTRICTED,
) -> Sizing:
    """How much to buy at ``entry_price`` (the slipped fill price) with a stop at ``stop_loss``.

    ``equity`` is cash plus every open position marked at its last close; ``available`` the cash not reserved by
    open positions; ``exposure`` the open positions' gross marked value and ``asset_exposure`` the part of it in
    this pair's base asset. Returns quantity 0 (binding "none", or "min_order" when the exchange's minimum refuses
    it) when nothing may be bought.
    """
    config = config or RiskConfig()
    if not ZERO < stop_loss < entry_price:  # no stop below the price; no equity or cash sizes to 0 below
        return Sizing(ZERO, "none")
    caps: list[tuple[Decimal, Binding]] = [
        (equity * config.max_position_fraction / entry_price, "position_cap"),
        (equity * config.risk_per_trade / (entry_price - stop_loss), "risk_cap"),
        ((equity * config.max_total_exposure - exposure) / entry_price, "exposure_cap"),
        ((equity * config.max_asset_exposure - asset_exposure) / entry_price, "asset_cap"),
        (available / (entry_price * (1 + fee_rate)), "cash_cap"),
    ]
    smallest, binding = min(caps, key=lambda cap: cap[0])
    quantity = quantize_quantity(smallest)
    quantity = quantize_quantity((quantity // rules.step) * rules.step) if quantity > 0 else ZERO
    if quantity <= 0:
        return Sizing(ZERO, "none")
    if quantity < rules.min_quantity or quantity * entry_price < rules.min_notional:
        return Sizing(ZERO, "min_order")
    return Sizing(quantity, binding)


def can_open(value: Decimal, peak: Decimal, limit: Decimal = DEFAULT_MAX_DRAWDOWN) -> bool:
    """May the account open a new position? No once the drawdown from the peak has reached ``limit``. The engine
    passes the value per unit and its peak (``chalicelib.accounting``), so capital flows never move it."""
    return drawdown(value, peak) < limit
