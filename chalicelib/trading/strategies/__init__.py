"""Strategies behind a registry: ``get_strategy("ml_basic")``, ``available_strategies()``.

Each entry is a zero-argument factory returning a fresh strategy with its documented defaults. Call
strategies through :func:`decide_safely` so one that raises is reported as a :class:`StrategyError`.
"""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies.base import (
    Decision,
    EnterLong,
    Exit,
    Hold,
    Strategy,
    StrategyError,
    decide_safely,
)
from chalicelib.trading.strategies.ma_crossover import MaCrossover


def _ml_basic() -> Strategy:
    from chalicelib.trading.strategies.ml_basic import MlBasic  # reads its weights file on first use

    return MlBasic()


_REGISTRY: dict[str, Callable[[], Strategy]] = {
    "ma_crossover": MaCrossover,
    "ml_basic": _ml_basic,
}


class UnknownStrategyError(KeyError):
    """No strategy by that name; the message lists the ones there are."""

    def __str__(self) -> str:
        return str(self.args[0])


def available_strategies() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def require_strategy(name: str) -> str:
    """``name`` if a strategy is registered under it (without building one); :class:`UnknownStrategyError`
    names the valid choices otherwise."""
    if name not in _REGISTRY:
        raise UnknownStrategyError(f"unknown strategy {name!r} (available: {', '.join(available_strategies())})")
    return name


def get_strategy(name: str) -> Strategy:
    """A fresh strategy for ``name``; :class:`UnknownStrategyError` names the valid choices otherwise."""
    return _REGISTRY[require_strategy(name)]()


__all__ = [
    "Decision",
    "EnterLong",
    "Exit",
    "Hold",
    "PositionView",
    "Strategy",
    "StrategyError",
    "UnknownStrategyError",
    "available_strategies",
    "decide_safely",
    "get_strategy",
    "require_strategy",
]
