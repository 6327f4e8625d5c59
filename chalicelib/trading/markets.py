"""What an exchange allows an order to be: the lot size (quantity step and minimum) and the minimum notional.

Sizing rounds a quantity DOWN to the lot step and refuses an order below the minimum quantity or notional, as the
exchange would. The exchange feed reads these from ccxt's market data (``CcxtFeed.market_rules``); replay reads the
bundled table below (Binance spot's filters for the bundled pairs, 2025); any other pair trades at the ledger's
quantity scale with no minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from chalicelib.money import QUANTITY_QUANTUM


@dataclass(frozen=True, slots=True)
class MarketRules:
    """A market's order filters; all Decimals (``step`` > 0, minimums ≥ 0)."""

    step: Decimal = QUANTITY_QUANTUM
    min_quantity: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if not (self.step.is_finite() and self.step > 0):
            raise ValueError(f"lot step must be positive, got {self.step}")
        for name in ("min_quantity", "min_notional"):
            value = getattr(self, name)
            if not (value.is_finite() and value >= 0):
                raise ValueError(f"{name} must not be negative, got {value}")


#: No filter beyond the ledger's quantity scale.
UNRESTRICTED = MarketRules()

#: Binance spot LOT_SIZE / NOTIONAL filters of the pairs bundled for replay.
BUNDLED_RULES: dict[str, MarketRules] = {
    "BTCUSDT": MarketRules(step=Decimal("0.00001"), min_quantity=Decimal("0.00001"), min_notional=Decimal(5)),
    "ETHUSDT": MarketRules(step=Decimal("0.0001"), min_quantity=Decimal("0.0001"), min_notional=Decimal(5)),
}


def bundled_rules(symbol: str) -> MarketRules:
    """The bundled filters of ``symbol`` (plain form, ``BTCUSDT``), else no filter."""
    return BUNDLED_RULES.get(symbol, UNRESTRICTED)
