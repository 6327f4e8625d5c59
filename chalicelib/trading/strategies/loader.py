"""User strategies: found in a directory of ``.py`` files or through the ``atb.strategies`` entry point group,
validated on load, and registered beside the built-in ones (docs/lab.md, "Writing a strategy").

A strategy *file* defines ``STRATEGY``: a class (or any callable) that, called with keyword arguments only, returns
an object with ``name``, ``warmup`` and ``decide`` (:class:`~chalicelib.trading.strategies.base.Strategy`). Its
keyword parameters, each with a default, are the strategy's parameters (what ``atb optimize`` searches). An entry
point ``NAME = "package.module:Factory"`` in the group ``atb.strategies`` is the same, with the strategy's name
taken from the entry point (it must match the object's ``name``).

Where strategies are looked for, in order: the built-ins; the directories given with ``--strategy-path`` (or
``ATB_STRATEGY_PATH``), added by :func:`add_strategy_path`; the bundled directory ``chalicelib/user_strategies``
(what the Lambda deploys, see docs/deploy.md); the installed entry points. Only a name that is not built in
triggers the search, so a broken user strategy never stops a built-in one from trading.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from chalicelib.trading.strategies.base import Strategy

ENTRY_POINT_GROUP = "atb.strategies"
#: Strategy files shipped inside the package (and so inside the Lambda bundle).
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "user_strategies"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PARAM_TYPES = (int, float, Decimal, bool, str)


class StrategyLoadError(ValueError):
    """A user strategy cannot be loaded or is not a valid strategy; the message is one line naming the source."""


@dataclass(frozen=True)
class StrategyEntry:
    """One registered strategy: how to build it, where it came from, and its parameters with their defaults."""

    name: str
    factory: Callable[..., Strategy]
    origin: str
    parameters: Mapping[str, Any]

    def build(self, **params: Any) -> Strategy:
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise StrategyLoadError(f"strategy {self.name} has no parameter {', '.join(unknown)} "
                                    f"(parameters: {', '.join(self.parameters) or 'none'})")
        try:
            strategy = self.factory(**params)
        except Exception as exc:
            raise StrategyLoadError(f"strategy {self.name} refused {_kwargs(params)}: {_one_line(exc)}") from exc
        return strategy


def _kwargs(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "its defaults"


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}"[:300] if lines else type(exc).__name__


def parameters_of(factory: Callable[..., Any], origin: str, *, strict: bool = True) -> dict[str, Any]:
    """The factory's keyword parameters and their defaults; every one must have a default of a plain type
    (``strict=False``, for built-in and test strategies: those that do not are simply not parameters)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError) as exc:
        raise StrategyLoadError(f"{origin}: cannot read the parameters of {factory!r}: {exc}") from None
    params: dict[str, Any] = {}
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "name":  # a dataclass's name field is the strategy's identity, not a parameter
            continue
        if not strict and (p.default is p.empty or not isinstance(p.default, PARAM_TYPES)):
            continue
        if p.default is p.empty:
            raise StrategyLoadError(f"{origin}: parameter {p.name!r} has no default "
                                    "(every parameter needs one: the strategy must build with no arguments)")
        if not isinstance(p.default, PARAM_TYPES):
            raise StrategyLoadError(f"{origin}: parameter {p.name!r} defaults to {type(p.default).__name__}; "
                                    "use int, float, Decimal, bool or str")
        params[p.name] = p.default
    return params


def validate(factory: Any, origin: str, expected_name: str | None = None) -> StrategyEntry:
    """Build the strategy with its defaults and check it keeps the contract; :class:`StrategyLoadError` if not."""
    if not callable(factory):
        raise StrategyLoadError(f"{origin}: STRATEGY must be a class or a callable, not {type(factory).__name__}")
    params = parameters_of(factory, origin)
    try:
        strategy = factory()
    except Exception as exc:
        raise StrategyLoadError(f"{origin}: building the strategy with its defaults failed: {_one_line(exc)}") from exc
    name = getattr(strategy, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise StrategyLoadError(f"{origin}: name must be lower-case letters, digits and _ (at most 64, starting "
                                f"with a letter), got {name!r}")
    if expected_name is not None and name != expected_name:
        raise StrategyLoadError(f"{origin}: the entry point is called {expected_name!r} but the strategy's name "
                                f"is {name!r}")
    warmup = getattr(strategy, "warmup", None)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise StrategyLoadError(f"{origin}: strategy {name}: warmup must be an int of at least 1 (the candles "
                                f"decide needs, the deciding one included), got {warmup!r}")
    decide = getattr(strategy, "decide", None)
    if not callable(decide):
        raise StrategyLoadError(f"{origin}: strategy {name} has no decide(candles, position) method")
    try:
        arity = len(inspect.signature(decide).parameters)
    except (TypeError, ValueError):
        arity = 2
    if arity != 2:
        raise StrategyLoadError(f"{origin}: strategy {name}: decide must take (candles, position), "
                                f"it takes {arity} argument(s)")
    return StrategyEntry(name=name, factory=factory, origin=origin, parameters=params)


def load_file(path: Path) -> StrategyEntry:
    """Import one strategy file and validate its ``STRATEGY``."""
    origin = f"strategy file {path}"
    module_name = f"atb_user_strategies.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise StrategyLoadError(f"{origin}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise StrategyLoadError(f"{origin}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise StrategyLoadError(f"{origin}: importing it failed: {_one_line(exc)}") from exc
    if not hasattr(module, "STRATEGY"):
        raise StrategyLoadError(f"{origin}: defines no STRATEGY (set STRATEGY = YourStrategyClass)")
    return validate(module.STRATEGY, origin)


def load_directory(directory: Path) -> list[StrategyEntry]:
    """Every ``*.py`` file of ``directory`` not starting with ``_``, in name order."""
    if not directory.is_dir():
        raise StrategyLoadError(f"strategy path {directory} is not a directory")
    return [load_file(p) for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")]


def load_entry_points() -> list[StrategyEntry]:
    """The installed ``atb.strategies`` entry points."""
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {ep.name} = {ep.value}"
        try:
            factory = ep.load()
        except Exception as exc:
            raise StrategyLoadError(f"{origin}: loading it failed: {_one_line(exc)}") from exc
        loaded.append(validate(factory, origin, expected_name=ep.name))
    return loaded
