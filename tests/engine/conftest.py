"""The engine tests' scripted strategy is registered like a real one, for each test only, so that bots trading
it pass the same validation as any other bot."""

from __future__ import annotations

import pytest
from engine_testing import ScriptedStrategy

from chalicelib.trading import strategies


@pytest.fixture(autouse=True)
def scripted_strategy_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(strategies._REGISTRY, "scripted", ScriptedStrategy)
