"""Moving-average crossover: the rule-based baseline ``ml_basic`` has to beat.

* Enter long when the fast SMA of closes crosses ABOVE the slow SMA on the deciding candle
  (``fast[t-1] <= slow[t-1]`` and ``fast[t] > slow[t]``). Defaults: fast 20, slow 50 candles.
* Exit when the fast SMA is below the slow SMA.
* Stop loss ``close - 2 * ATR(14)``, take profit ``close + 4 * ATR(14)`` (a 2:1 reward/risk), rounded to money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from chalicelib.trading.candles import Candle
from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies.base import Decision, Exit, Hold
from chalicelib.trading.strategies.indicators import atr_bracket, sma


@dataclass(frozen=True)
class MaCrossover:
    fast: int = 20
    slow: int = 50
    atr_period: int = 14
    stop_atr: Decimal = Decimal(2)
    target_atr: Decimal = Decimal(4)
    name: str = "ma_crossover"

    def __post_init__(self) -> None:
        if not 0 < self.fast < self.slow:
            raise ValueError(f"need 0 < fast < slow, got fast={self.fast} slow={self.slow}")

    @property
    def warmup(self) -> int:
        return max(self.slow + 1, self.atr_period + 1)

    def decide(self, candles: Sequence[Candle], position: PositionView | None) -> Decision:
        closes = [c.close for c in candles[-(self.slow + 1) :]]
        fast_now, slow_now = sma(closes, self.fast), sma(closes, self.slow)
        if position is not None:
            if fast_now < slow_now:
                return Exit(reason=f"fast SMA {fast_now:.2f} fell below slow SMA {slow_now:.2f}")
            return Hold()
        fast_before, slow_before = sma(closes[:-1], self.fast), sma(closes[:-1], self.slow)
        if fast_before <= slow_before and fast_now > slow_now:
            return atr_bracket(candles, period=self.atr_period, stop_atr=self.stop_atr, target_atr=self.target_atr,
                               reason=f"fast SMA crossed above slow SMA ({fast_now:.2f} > {slow_now:.2f})")
        return Hold()
