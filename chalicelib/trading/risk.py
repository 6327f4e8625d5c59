"""Risk rules: how big a new position may be, and when the session must stop opening new ones.

Sizing (all from the *current* balance, never the initial one):

* **position cap** -- the entry notional costs at most ``max_position_fraction`` (default 10%) of the balance:
  ``qty <= balance * fraction / entry``;
* **risk cap** -- if the stop is hit, the loss (before fees) is at most ``risk_per_trade`` (default 2%) of the
  balance: ``qty <= balance * risk / (entry - stop)``;
* **cash cap** -- notional plus the entry fee fits in the available cash:
  ``qty <= available / (entry * (1 + fee_rate))``.

The quantity is the smallest of the three, rounded DOWN to the stored quantity scale (so rounding can never
spend more than allowed). Zero means "do not trade".

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

DEFAULT_MAX_POSITION_FRACTION = Decimal("0.10")
DEFAULT_RISK_PER_TRADE = Decimal("0.02")
DEFAULT_MAX_DRAWDOWN = Decimal("0.20")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Fractions of the balance, as Decimals."""

    max_position_fraction: Decimal = DEFAULT_MAX_POSITION_FRACTION
    risk_per_trade: Decimal = DEFAULT_RISK_PER_TRADE
    max_drawdown: Decimal = DEFAULT_MAX_DRAWDOWN

    def __post_init__(self) -> None:
        for name in ("max_position_fraction", "risk_per_trade", "max_drawdown"):
            value = getattr(self, name)
            if not (value.is_finite() and ZERO < value <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {value}")


@dataclass(frozen=True, slots=True)
class Sizing:
    """The quantity to buy and which cap decided it (for the tick log)."""

    quantity: Decimal
    binding: Literal["position_cap", "risk_cap", "cash_cap", "none"]


def size_position(
    balance: Decimal,
    available: Decimal,
    entry_price: Decimal,
    stop_loss: Decimal,
    *,
    fee_rate: Decimal = DEFAULT_FEE_RATE,
    config: RiskConfig | None = None,
) -> Sizing:
    """How much to buy at ``entry_price`` (the slipped fill price) with a stop at ``stop_loss``.

    ``balance`` is the session's total balance (cash + cost of open positions); ``available`` the cash not
    reserved by open positions. Returns quantity 0 (binding "none") when nothing may be bought.
    """
    config = config or RiskConfig()
    if not ZERO < stop_loss < entry_price:  # no stop below the price; no balance or cash sizes to 0 below
        return Sizing(ZERO, "none")
    by_position = balance * config.max_position_fraction / entry_price
    by_risk = balance * config.risk_per_trade / (entry_price - stop_loss)
    by_cash = available / (entry_price * (1 + fee_rate))
    caps: list[tuple[Decimal, Literal["position_cap", "risk_cap", "cash_cap"]]] = [
        (by_position, "position_cap"),
        (by_risk, "risk_cap"),
        (by_cash, "cash_cap"),
    ]
    smallest, binding = min(caps, key=lambda cap: cap[0])
    quantity = quantize_quantity(smallest)
    if quantity <= 0:
        return Sizing(ZERO, "none")
    return Sizing(quantity, binding)


def can_open(value: Decimal, peak: Decimal, limit: Decimal = DEFAULT_MAX_DRAWDOWN) -> bool:
    """May the account open a new position? No once the drawdown from the peak has reached ``limit``. The engine
    passes the value per unit and its peak (``chalicelib.accounting``), so capital flows never move it."""
    return drawdown(value, peak) < limit
