"""What the pure trading code needs to know about an open position (the database row lives elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from chalicelib.money import quantize_money
from chalicelib.states import Side


@dataclass(frozen=True, slots=True)
class PositionView:
    """A read-only snapshot of one open long position: enough for strategies, stops and P&L."""

    entry_price: Decimal
    quantity: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    opened_at: datetime  # open time of the candle whose close the entry filled at
    side: Side = "long"

    @property
    def cost(self) -> Decimal:
        """Cash tied up in the position: entry notional, fees excluded (what the ledger reserves)."""
        return quantize_money(self.entry_price * self.quantity)
