"""Strategy parameters on the command line: ``--param fast=12`` (a value) and ``--param fast=10:30`` (a range)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from chalicelib.trading.strategies import StrategyEntry


class ParamError(ValueError):
    """A ``--param`` that does not fit the strategy; the message is one line."""


def _split(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ParamError(f"--param {text!r}: expected NAME=VALUE (or NAME=LOW:HIGH for optimize)")
    return name.strip(), value.strip()


def _known(entry: StrategyEntry, name: str) -> Any:
    if name not in entry.parameters:
        raise ParamError(f"strategy {entry.name} has no parameter {name!r} "
                         f"(parameters: {', '.join(entry.parameters) or 'none'})")
    return entry.parameters[name]


def convert(entry: StrategyEntry, name: str, text: str) -> Any:
    """``text`` as the type of the parameter's default (int, float, Decimal, bool or str)."""
    default = _known(entry, name)
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, Decimal):
            value = Decimal(text)
            if not value.is_finite():
                raise ValueError(text)
            return value
    except (ValueError, InvalidOperation):
        raise ParamError(f"--param {name}={text}: {name} is {type(default).__name__} "
                         f"(default {default})") from None
    return text


def parse_values(entry: StrategyEntry, items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["fast=12", "slow=60"]`` → ``{"fast": 12, "slow": 60}``, typed like the defaults."""
    out: dict[str, Any] = {}
    for item in items:
        name, value = _split(item)
        out[name] = convert(entry, name, value)
    return out


@dataclass(frozen=True)
class ParamRange:
    name: str
    low: Any
    high: Any

    @property
    def kind(self) -> str:
        return "int" if isinstance(self.low, int) else "float"


def parse_ranges(entry: StrategyEntry, items: tuple[str, ...] | list[str]) -> list[ParamRange]:
    """``["fast=10:30"]`` → ranges (inclusive) of int or float parameters; Decimal ones search as floats."""
    out = []
    for item in items:
        name, value = _split(item)
        low_text, sep, high_text = value.partition(":")
        if not sep:
            raise ParamError(f"--param {item!r}: expected NAME=LOW:HIGH")
        default = _known(entry, name)
        if isinstance(default, bool) or not isinstance(default, (int, float, Decimal)):
            raise ParamError(f"--param {name}: only numeric parameters can be searched "
                             f"({name} is {type(default).__name__})")
        low, high = convert(entry, name, low_text), convert(entry, name, high_text)
        if isinstance(default, Decimal):
            low, high = float(low), float(high)
        if not low < high:
            raise ParamError(f"--param {item!r}: LOW must be below HIGH")
        out.append(ParamRange(name, low, high))
    if len({r.name for r in out}) != len(out):
        raise ParamError("each parameter may be given one range")
    return out
