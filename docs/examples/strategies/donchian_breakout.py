"""Donchian breakout: the worked example of docs/lab.md ("Writing a strategy").

Buy when the close breaks above the highest high of the previous ``entry`` candles; sell when it falls below the
lowest low of the previous ``exit`` candles. Every entry carries a stop ``stop_atr`` ATRs below the close and a
target ``target_atr`` ATRs above it (the engine fills them inside later candles, gaps included).

Use it:  atb backtest donchian_breakout --strategy-path docs/examples/strategies --days 90
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from chalicelib.trading.candles import Candle
from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies.base import Decision, Exit, Hold
from chalicelib.trading.strategies.indicators import atr_bracket


@dataclass(frozen=True)
class DonchianBreakout:
    # The parameters: keyword arguments with defaults (what `--param` sets and `atb optimize` searches).
    entry: int = 20
    exit: int = 10
    stop_atr: Decimal = Decimal(2)
    target_atr: Decimal = Decimal(4)
    name: str = "donchian_breakout"

    def __post_init__(self) -> None:
        if self.entry < 2 or self.exit < 2:
            raise ValueError(f"entry and exit need at least 2 candles, got entry={self.entry} exit={self.exit}")

    @property
    def warmup(self) -> int:
        # Candles decide() needs, the deciding one included: the channel before it, and ATR(14) needs 15.
        return max(self.entry, self.exit, 14) + 1

    def decide(self, candles: Sequence[Candle], position: PositionView | None) -> Decision:
        close = candles[-1].close
        if position is not None:
            floor = min(c.low for c in candles[-self.exit - 1 : -1])
            return Exit(reason=f"close {close} below the {self.exit}-candle low {floor}") if close < floor else Hold()
        ceiling = max(c.high for c in candles[-self.entry - 1 : -1])
        if close > ceiling:
            return atr_bracket(candles, period=14, stop_atr=self.stop_atr, target_atr=self.target_atr,
                               reason=f"close {close} above the {self.entry}-candle high {ceiling}")
        return Hold()


STRATEGY = DonchianBreakout
