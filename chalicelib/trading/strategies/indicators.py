"""Small indicator helpers shared by strategies. Prices stay Decimal; model features are floats (not money)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from itertools import pairwise

from chalicelib.money import quantize_money
from chalicelib.trading.candles import Candle
from chalicelib.trading.strategies.base import EnterLong


def sma(values: Sequence[Decimal], period: int) -> Decimal:
    """Simple moving average of the last ``period`` values."""
    if period <= 0 or len(values) < period:
        raise ValueError(f"sma needs {period} values, got {len(values)}")
    return sum(values[-period:], Decimal(0)) / period


def true_range(candle: Candle, previous_close: Decimal) -> Decimal:
    """The candle's range widened to include a gap from the previous close."""
    return max(candle.high - candle.low, abs(candle.high - previous_close), abs(candle.low - previous_close))


def atr(candles: Sequence[Candle], period: int = 14) -> Decimal:
    """Average true range over the last ``period`` candles (simple mean; needs ``period + 1`` candles)."""
    if len(candles) < period + 1:
        raise ValueError(f"atr({period}) needs {period + 1} candles, got {len(candles)}")
    tail = candles[-(period + 1) :]
    ranges = [true_range(cur, prev.close) for prev, cur in pairwise(tail)]
    return sum(ranges, Decimal(0)) / period


def atr_bracket(
    candles: Sequence[Candle], *, period: int, stop_atr: Decimal, target_atr: Decimal, reason: str
) -> EnterLong:
    """Enter long at the last close with a stop ``stop_atr`` ATRs below it and a target ``target_atr`` above."""
    close = candles[-1].close
    width = atr(candles, period)
    return EnterLong(
        stop_loss=quantize_money(close - stop_atr * width),
        take_profit=quantize_money(close + target_atr * width),
        reason=reason,
    )


def log_return(new: float, old: float) -> float:
    return math.log(new / old)


def stdev(values: Sequence[float]) -> float:
    """Population standard deviation."""
    n = len(values)
    if n == 0:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / n)


def rsi(closes: Sequence[float], period: int = 14) -> float:
    """Relative strength index in [0, 100] from simple averages of the last ``period`` changes."""
    if len(closes) < period + 1:
        raise ValueError(f"rsi({period}) needs {period + 1} closes, got {len(closes)}")
    tail = closes[-(period + 1) :]
    gains = losses = 0.0
    for prev, cur in pairwise(tail):
        change = cur - prev
        if change > 0:
            gains += change
        else:
            losses -= change
    if gains + losses == 0:
        return 50.0
    return 100.0 * gains / (gains + losses)
