"""``ml_basic``: a small L2-regularised logistic regression on normalised price features.

The model estimates ``p = P(close[t + H] > close[t])``, the probability that the price is higher
``H = horizon`` candles (4 hours on 1h data) after the deciding candle, from the last ``WINDOW`` candles only.

Features (computed by :func:`feature_vector`, all unit-free so they carry across price levels):

=================  ========================================================================================
``ret_1``          log return of the last candle, ``ln(c[t] / c[t-1])``
``ret_4``          log return over 4 candles
``ret_12``         log return over 12 candles
``ret_24``         log return over 24 candles
``vol_24``         standard deviation of the last 24 one-candle log returns (realised volatility)
``dist_sma_24``    ``ln(c[t] / SMA24)``: distance from the 24-candle mean
``dist_sma_72``    ``ln(c[t] / SMA72)``: distance from the 72-candle mean
``rsi_14``         RSI(14) rescaled to [-1, 1]: ``(RSI - 50) / 50``
``range_pos_24``   where the close sits in the 24-candle high/low range, in [-0.5, 0.5]
``atr_14``         ATR(14) / close: typical candle size relative to the price
``volume_ratio``   ``ln(volume / mean volume of 24 candles)``, clipped to [-5, 5] (zero volumes happen)
``body``           ``(close - open) / (high - low)`` of the last candle, 0 for a flat candle
=================  ========================================================================================

Each feature is standardised with the mean and standard deviation of the TRAINING rows (stored with the
weights), clipped to [-5, 5], then ``p = sigmoid(bias + w . z)``.

Decisions (thresholds are in ``ml_basic_weights.json``, chosen by the training command from the training
rows only; see :mod:`lab.train_ml_basic`):

* no position and ``p > enter_threshold`` -> enter long, stop ``close - 2 * ATR(14)``,
  target ``close + 3 * ATR(14)`` (prices rounded to money);
* open position and ``p < exit_threshold`` -> exit at the close;
* otherwise hold.

Weights are plain JSON read with the standard library: no numpy at runtime, so the Lambda bundle stays lean.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from chalicelib.trading.candles import Candle
from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies.base import Decision, Exit, Hold
from chalicelib.trading.strategies.indicators import atr_bracket, rsi, stdev

WEIGHTS_PATH = Path(__file__).resolve().parent / "ml_basic_weights.json"
FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_4",
    "ret_12",
    "ret_24",
    "vol_24",
    "dist_sma_24",
    "dist_sma_72",
    "rsi_14",
    "range_pos_24",
    "atr_14",
    "volume_ratio",
    "body",
)
#: candles the features look at (the deciding candle included)
WINDOW = 73
Z_CLIP = 5.0


def feature_vector(
    opens: Sequence[float],
    highs: Sequence[float],
    lows: Sequence[float],
    closes: Sequence[float],
    volumes: Sequence[float],
) -> list[float]:
    """The raw (unnormalised) features of the LAST element of each series; needs ``WINDOW`` elements.

    Shared by the strategy and the training command so both see exactly the same numbers.
    """
    if len(closes) < WINDOW:
        raise ValueError(f"features need {WINDOW} candles, got {len(closes)}")
    c = closes[-1]
    rets = [math.log(closes[i] / closes[i - 1]) for i in range(len(closes) - 24, len(closes))]
    sma24 = sum(closes[-24:]) / 24
    sma72 = sum(closes[-72:]) / 72
    hi24, lo24 = max(highs[-24:]), min(lows[-24:])
    ranges = [
        max(highs[i] - lows[i], abs(highs[i] - closes[i - 1]), abs(lows[i] - closes[i - 1]))
        for i in range(len(closes) - 14, len(closes))
    ]
    mean_volume = sum(volumes[-24:]) / 24
    eps = 1e-12
    volume_ratio = math.log((volumes[-1] + eps) / (mean_volume + eps))
    span = highs[-1] - lows[-1]
    return [
        rets[-1],
        math.log(c / closes[-5]),
        math.log(c / closes[-13]),
        math.log(c / closes[-25]),
        stdev(rets),
        math.log(c / sma24),
        math.log(c / sma72),
        (rsi(closes[-15:], 14) - 50.0) / 50.0,
        ((c - lo24) / (hi24 - lo24) - 0.5) if hi24 > lo24 else 0.0,
        (sum(ranges) / 14) / c,
        max(-5.0, min(5.0, volume_ratio)),
        (c - opens[-1]) / span if span > 0 else 0.0,
    ]


def candle_features(candles: Sequence[Candle]) -> list[float]:
    """Raw features of the newest candle (floats: these are model inputs, not money)."""
    tail = candles[-WINDOW:]
    return feature_vector(
        [float(x.open) for x in tail],
        [float(x.high) for x in tail],
        [float(x.low) for x in tail],
        [float(x.close) for x in tail],
        [float(x.volume) for x in tail],
    )


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class LogisticModel:
    """Standardisation + linear weights + thresholds, as stored in JSON."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    enter_threshold: float
    exit_threshold: float
    horizon: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticModel:
        features = tuple(data["features"])
        if features != FEATURES:
            raise ValueError(f"weights were trained on features {features}, this code computes {FEATURES}")
        n = len(features)
        mean, std, weights = (tuple(float(v) for v in data[k]) for k in ("mean", "std", "weights"))
        if not len(mean) == len(std) == len(weights) == n:
            raise ValueError("weights file: mean, std and weights must each have one value per feature")
        if any(s <= 0 for s in std):
            raise ValueError("weights file: every std must be positive")
        model = cls(
            features=features,
            mean=mean,
            std=std,
            weights=weights,
            bias=float(data["bias"]),
            enter_threshold=float(data["enter_threshold"]),
            exit_threshold=float(data["exit_threshold"]),
            horizon=int(data["horizon"]),
            extra={k: v for k, v in data.items() if k in ("trained_on", "metrics", "l2")},
        )
        if not 0 < model.exit_threshold <= model.enter_threshold < 1:
            raise ValueError("weights file: need 0 < exit_threshold <= enter_threshold < 1")
        return model

    def to_json(self) -> dict[str, Any]:
        return {
            "model": "ml_basic logistic regression",
            "features": list(self.features),
            "mean": list(self.mean),
            "std": list(self.std),
            "weights": list(self.weights),
            "bias": self.bias,
            "enter_threshold": self.enter_threshold,
            "exit_threshold": self.exit_threshold,
            "horizon": self.horizon,
            **self.extra,
        }

    def standardise(self, raw: Sequence[float]) -> list[float]:
        return [max(-Z_CLIP, min(Z_CLIP, (x - m) / s)) for x, m, s in zip(raw, self.mean, self.std, strict=True)]

    def probability(self, raw: Sequence[float]) -> float:
        z = self.standardise(raw)
        return sigmoid(self.bias + sum(w * x for w, x in zip(self.weights, z, strict=True)))


@lru_cache(maxsize=4)
def load_model(path: Path = WEIGHTS_PATH) -> LogisticModel:
    """Read the shipped weights once per process (warm Lambdas reuse them)."""
    with path.open(encoding="utf-8") as handle:
        return LogisticModel.from_json(json.load(handle))


@dataclass(frozen=True)
class MlBasic:
    """The strategy object behind the registry name ``ml_basic``."""

    model: LogisticModel = field(default_factory=load_model)
    atr_period: int = 14
    stop_atr: Decimal = Decimal(2)
    target_atr: Decimal = Decimal(3)
    name: str = "ml_basic"

    @property
    def warmup(self) -> int:
        return max(WINDOW, self.atr_period + 1)

    def probability(self, candles: Sequence[Candle]) -> float:
        """The model's probability that the price is higher ``horizon`` candles after ``candles[-1]``."""
        return self.model.probability(candle_features(candles))

    def decide(self, candles: Sequence[Candle], position: PositionView | None) -> Decision:
        p = self.probability(candles)
        if position is not None:
            if p < self.model.exit_threshold:
                return Exit(reason=f"p(up)={p:.3f} < exit threshold {self.model.exit_threshold:.3f}")
            return Hold(reason=f"p(up)={p:.3f}")
        if p > self.model.enter_threshold:
            return atr_bracket(candles, period=self.atr_period, stop_atr=self.stop_atr, target_atr=self.target_atr,
                               reason=f"p(up)={p:.3f} > enter threshold {self.model.enter_threshold:.3f}")
        return Hold(reason=f"p(up)={p:.3f}")
