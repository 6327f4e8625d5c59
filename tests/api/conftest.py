"""Fixtures for the HTTP API: tokens in the environment, a Chalice test client, sessions made through the ledger."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import TOKENS, StartSession, make_starter
from chalice.test import Client
from sqlalchemy import Engine


@pytest.fixture(autouse=True)
def api_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_API_TOKENS", TOKENS)
    monkeypatch.delenv("ATB_API_TOKENS_SECRET_ARN", raising=False)


@pytest.fixture
def client() -> Iterator[Client]:
    from app import app

    with Client(app) as c:
        yield c




@pytest.fixture
def start_session(engine: Engine) -> StartSession:
    return make_starter(engine)


