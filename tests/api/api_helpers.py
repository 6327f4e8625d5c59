"""Helpers for the HTTP API tests: tokens, headers, sessions made through the ledger, ledger snapshots."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from chalicelib import ledger
from chalicelib.db.models import AccountBalance, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction

READ_TOKEN = "read-token-0123456789abcdef0123456789"
WRITE_TOKEN = "write-token-9876543210fedcba9876543210"
TOKENS = f"dashboard:read:{READ_TOKEN},owner:write:{WRITE_TOKEN}"


def auth(token: str = WRITE_TOKEN, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def post_json(token: str = WRITE_TOKEN, **extra: str) -> dict[str, str]:
    return auth(token, **{"Content-Type": "application/json", **extra})


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


StartSession = Callable[..., int]


def make_starter(engine: Engine) -> StartSession:
    counter = iter(range(1, 10_000))

    def start(initial: str = "10000", *, strategy: str | None = None, now: datetime | None = None) -> int:
        """A new bot's account: each call is another bot (another exchange), as one bot has one account."""
        with write_transaction(engine) as db:
            s = ledger.start_session(db, strategy=strategy or "ma_crossover", symbol="BTCUSDT",
                                     timeframe="1h", exchange=f"exchange{next(counter)}", mode="paper",
                                     initial_balance=Decimal(initial), now=now)
            return s.id

    return start


def ledger_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every ledger row and every session's cached money: compare before/after to prove nothing changed."""
    with read_transaction(engine) as db:
        rows = [(r.id, r.session_id, r.kind, r.delta, r.total_balance, r.reference)
                for r in db.execute(select(AccountBalance).order_by(AccountBalance.id)).scalars()]
        sessions = [(s.id, s.total_balance, s.available_balance, s.reserved_balance, s.version)
                    for s in db.execute(select(TradingSession).order_by(TradingSession.id)).scalars()]
    return [*rows, *sessions]
