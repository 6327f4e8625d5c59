"""The strategy contract: candles and the open position in, one decision out; nothing else.

Strategies are pure: no clock reads, no I/O, no randomness, no state carried between calls. Given the same
candles they give the same decision, and a decision at candle ``t`` only ever sees candles up to ``t`` (the
caller passes ``candles[: t + 1]``), so there is no look-ahead by construction.

Callers go through :func:`decide_safely`, which turns any exception (or a malformed decision) into a
:class:`StrategyError` with a one-line message, so the session can log it and hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from chalicelib.trading.candles import Candle
from chalicelib.trading.position import PositionView


@dataclass(frozen=True, slots=True)
class Hold:
    """Do nothing this candle."""

    reason: str = ""
    kind: str = "hold"


@dataclass(frozen=True, slots=True)
class EnterLong:
    """Buy at this candle's close; protect with a stop below and a target above the price."""

    stop_loss: Decimal
    take_profit: Decimal
    reason: str = ""
    kind: str = "enter_long"


@dataclass(frozen=True, slots=True)
class Exit:
    """Sell the open position at this candle's close."""

    reason: str = ""
    kind: str = "exit"


Decision = Hold | EnterLong | Exit


class StrategyError(RuntimeError):
    """A strategy raised or returned nonsense; the message is one line, the session holds."""

    def __init__(self, strategy: str, problem: str) -> None:
        self.strategy = strategy
        self.problem = problem
        super().__init__(f"strategy {strategy} failed: {problem}")


@runtime_checkable
class Strategy(Protocol):
    """Anything with a name, a warm-up length and a pure ``decide``."""

    @property
    def name(self) -> str:
        """The registry name, used in logs and errors."""
        ...

    @property
    def warmup(self) -> int:
        """How many candles (the deciding one included) ``decide`` needs before it can do more than hold."""
        ...

    def decide(self, candles: Sequence[Candle], position: PositionView | None) -> Decision:
        """Decide on the newest candle, ``candles[-1]``; older ones are history."""
        ...


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def decide_safely(strategy: Strategy, candles: Sequence[Candle], position: PositionView | None, *,
                  may_add: bool = False) -> Decision:
    """Call ``strategy.decide`` and check the answer; raise :class:`StrategyError` instead of anything else.

    Fewer candles than ``strategy.warmup`` give :class:`Hold` without calling the strategy. An ``EnterLong``
    while a position is open (unless ``may_add``: the account may hold more than one position in this pair), an
    ``Exit`` with none, or a stop/target on the wrong side of the close are reported as errors rather than silently
    acted on.
    """
    if len(candles) < strategy.warmup:
        return Hold(reason=f"warming up ({len(candles)}/{strategy.warmup} candles)")
    try:
        decision = strategy.decide(candles, position)
    except Exception as exc:  # a strategy must never take the tick down
        raise StrategyError(strategy.name, _one_line(exc)) from exc
    if isinstance(decision, Hold):
        return decision
    if isinstance(decision, Exit):
        if position is None:
            raise StrategyError(strategy.name, "asked to exit with no open position")
        return decision
    if isinstance(decision, EnterLong):
        if position is not None and not may_add:
            raise StrategyError(strategy.name, "asked to enter while a position is already open")
        close = candles[-1].close
        for name in ("stop_loss", "take_profit"):
            value = getattr(decision, name)
            if not isinstance(value, Decimal) or not value.is_finite():
                raise StrategyError(strategy.name, f"{name} must be a finite Decimal, got {value!r}")
        if not Decimal(0) < decision.stop_loss < close:
            raise StrategyError(
                strategy.name, f"stop_loss {decision.stop_loss} must be positive and below the close {close}"
            )
        if decision.take_profit <= close:
            raise StrategyError(strategy.name, f"take_profit {decision.take_profit} must be above the close {close}")
        return decision
    raise StrategyError(strategy.name, f"returned {type(decision).__name__}, not a Decision")
