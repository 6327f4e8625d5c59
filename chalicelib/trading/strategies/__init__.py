"""Strategies behind a registry: ``get_strategy("ml_basic")``, ``available_strategies()``.

Each entry is a factory that builds a fresh strategy from keyword parameters, each with a documented default.
Built-in strategies are registered here; user strategies (a ``--strategy-path`` directory, the bundled
``chalicelib/user_strategies`` directory, the ``atb.strategies`` entry points) are found and validated by
:mod:`.loader`. Call strategies through :func:`decide_safely` so one that raises is reported as a
:class:`StrategyError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from chalicelib.trading.strategies.loader import (
    BUNDLED_DIR,
    StrategyEntry,
    StrategyLoadError,
    load_directory,
    load_entry_points,
    parameters_of,
)
from chalicelib.trading.strategies.ma_crossover import MaCrossover


def _ml_basic() -> Strategy:
    from chalicelib.trading.strategies.ml_basic import MlBasic  # reads its weights file on first use

    return MlBasic()


_REGISTRY: dict[str, Callable[..., Strategy]] = {
    "ma_crossover": MaCrossover,
    "ml_basic": _ml_basic,
}
_USER: dict[str, StrategyEntry] = {}
_paths: list[Path] = []
_discovered = False


class UnknownStrategyError(KeyError):
    """No strategy by that name (or a user strategy that failed to load); the message says which exist."""

    def __str__(self) -> str:
        return str(self.args[0])


class StrategyNotLoadedError(UnknownStrategyError):
    """Looking for a user strategy, one of the user strategy sources failed to load (the message says which)."""


def _register(entry: StrategyEntry) -> None:
    if entry.name in _REGISTRY:
        raise StrategyLoadError(f"{entry.origin}: {entry.name!r} is a built-in strategy's name; choose another")
    known = _USER.get(entry.name)
    if known is not None and known.origin != entry.origin:
        raise StrategyLoadError(f"{entry.origin}: strategy {entry.name!r} is already defined by {known.origin}")
    _USER[entry.name] = entry


def add_strategy_path(directory: str | Path) -> list[str]:
    """Load every strategy file of ``directory`` now (errors surface at start, not at the first tick) and keep
    the directory for later look-ups; the names loaded, sorted. :class:`StrategyLoadError` on any problem."""
    path = Path(directory).expanduser().resolve()
    entries = load_directory(path)
    for entry in entries:
        _register(entry)
    if path not in _paths:
        _paths.append(path)
    return sorted(e.name for e in entries)


def strategy_paths() -> list[Path]:
    """The directories loaded with :func:`add_strategy_path`, in order (for worker processes to load again)."""
    return list(_paths)


def _discover() -> None:
    """The bundled directory and the entry points, once per process (the --strategy-path ones load eagerly)."""
    global _discovered  # noqa: PLW0603 - one registry per process
    if _discovered:
        return
    if BUNDLED_DIR.is_dir():
        for entry in load_directory(BUNDLED_DIR):
            _register(entry)
    for entry in load_entry_points():
        _register(entry)
    _discovered = True  # a failure is raised again at the next look-up, not forgotten


def _find(name: str) -> StrategyEntry | None:
    if name in _REGISTRY:
        factory = _REGISTRY[name]
        return StrategyEntry(name=name, factory=factory, origin="built in",
                             parameters=parameters_of(factory, f"built-in strategy {name}", strict=False))
    if name not in _USER:
        try:
            _discover()
        except StrategyLoadError as exc:
            raise StrategyNotLoadedError(f"unknown strategy {name!r}: {exc}") from None
    return _USER.get(name)


def available_strategies() -> list[str]:
    """Strategy names, built-in and user ones, sorted (user sources that fail to load are left out)."""
    with contextlib.suppress(StrategyLoadError):
        _discover()
    return sorted({*_REGISTRY, *_USER})


def strategy_entry(name: str) -> StrategyEntry:
    """The registered strategy ``name``; :class:`UnknownStrategyError` names the valid choices otherwise."""
    entry = _find(name)
    if entry is None:
        raise UnknownStrategyError(f"unknown strategy {name!r} (available: {', '.join(available_strategies())})")
    return entry


def require_strategy(name: str) -> str:
    """``name`` if a strategy is registered under it (without building one); :class:`UnknownStrategyError`
    names the valid choices otherwise."""
    return strategy_entry(name).name


def get_strategy(name: str, **params: Any) -> Strategy:
    """A fresh strategy for ``name`` (with ``params`` instead of its defaults); :class:`UnknownStrategyError`
    names the valid choices otherwise, :class:`StrategyLoadError` says why parameters were refused."""
    return strategy_entry(name).build(**params)


__all__ = [
    "Decision",
    "EnterLong",
    "Exit",
    "Hold",
    "PositionView",
    "Strategy",
    "StrategyEntry",
    "StrategyError",
    "StrategyLoadError",
    "StrategyNotLoadedError",
    "UnknownStrategyError",
    "add_strategy_path",
    "available_strategies",
    "decide_safely",
    "get_strategy",
    "require_strategy",
    "strategy_entry",
    "strategy_paths",
    "strategy_version",
]


def strategy_version(strategy: Strategy) -> str:
    """Which parameters (or model) a strategy decides with, recorded on each position it opens: its own
    ``version`` attribute when it has one, else the first 12 hex digits of the SHA-256 of its fields (a dataclass's
    repr: parameters and model weights); "" when it has neither."""
    import dataclasses
    import hashlib

    own = getattr(strategy, "version", None)
    if isinstance(own, str) and own:
        return own[:64]
    if dataclasses.is_dataclass(strategy):
        return hashlib.sha256(repr(strategy).encode()).hexdigest()[:12]
    return ""
