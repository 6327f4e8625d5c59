"""Every money path waits for the database as few times as its work needs: round trips counted at the wire.

A TCP proxy (``bench/_wire.py``) sits between pg8000 and PostgreSQL and counts each turn of the conversation
(the client speaks, then waits), so the count includes BEGIN, COMMIT and anything else the driver sends. The counts
are deterministic, so they are pinned exactly: a change that adds a round trip to a money path fails here and must
say why. Measured on a warm pooled connection (its statements already prepared), as a warm Lambda runs them; a new
connection prepares each statement once (one more round trip per statement, the first time).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_testing import HOUR, T0, FakeExchange, ScriptedStrategy, candle
from sqlalchemy import Engine, event

from chalicelib.balances import change_balance, read_summary
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import fixed_clock, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db import engine as engine_module
from chalicelib.db.uow import read_transaction
from chalicelib.ledger import Actor
from chalicelib.trading.strategies import EnterLong

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))  # after the project: bench/lab.py never hides lab/

from _wire import WireCounter

pytestmark = pytest.mark.postgres_only



def spec(exchange: str = "binance") -> BotSpec:
    return BotSpec(strategy="scripted", symbol="BTCUSDT", timeframe="1h", exchange=exchange)

ME = Actor("tester")


@pytest.fixture
def wire(pg_database_url: str) -> Iterator[tuple[WireCounter, Engine]]:
    from sqlalchemy.engine import make_url

    parsed = make_url(pg_database_url)
    with WireCounter(parsed.host or "127.0.0.1", parsed.port or 5432) as counter:
        yield counter, engine_module.get_engine(counter.url_for(pg_database_url))


def trips(counter: WireCounter, call: Any) -> int:
    before = counter.round_trips
    call()
    return counter.round_trips - before


def test_a_balance_change_is_four_round_trips_begin_lock_write_commit(wire: tuple[WireCounter, Engine]) -> None:
    counter, engine = wire
    sid = open_session(engine, spec(), initial_balance=Decimal(1000)).session_id

    def deposit(key: str | None = None) -> None:
        change_balance("deposit", Decimal(1), reason="top up", actor=ME, session_id=sid, engine=engine,
                       idempotency_key=key)

    deposit()  # the connection prepares its statements once
    deposit("k-0")
    assert trips(counter, deposit) == 4
    assert trips(counter, lambda: deposit("k-1")) == 4  # with an idempotency key: looked up with the lock
    assert trips(counter, lambda: change_balance("set", Decimal(500), reason="set", actor=ME, session_id=sid,
                                                 engine=engine)) == 4
    assert trips(counter, lambda: change_balance("withdraw", Decimal(5), reason="out", actor=ME, session_id=sid,
                                                 engine=engine)) == 4


def test_a_refused_change_costs_no_write_and_names_why(wire: tuple[WireCounter, Engine]) -> None:
    from chalicelib.ledger import InsufficientFunds

    counter, engine = wire
    sid = open_session(engine, spec(), initial_balance=Decimal(10)).session_id
    before = read_summary(sid, engine=engine).session.version

    def refused() -> None:
        with pytest.raises(InsufficientFunds, match="available balance would be"):
            change_balance("withdraw", Decimal(11), reason="too much", actor=ME, session_id=sid, engine=engine)

    refused()
    assert trips(counter, refused) == 3  # BEGIN, the lock, ROLLBACK: nothing was sent to be written
    assert read_summary(sid, engine=engine).session.version == before


def test_rehydrate_is_three_round_trips(wire: tuple[WireCounter, Engine]) -> None:
    counter, engine = wire
    open_session(engine, spec(), initial_balance=Decimal(1000))
    open_session(engine, spec())
    assert trips(counter, lambda: open_session(engine, spec())) == 3  # BEGIN snapshot, session ⟕ positions, ROLLBACK


def test_the_balance_read_is_four_round_trips_begin_two_statements_rollback(
        wire: tuple[WireCounter, Engine]) -> None:
    """GET /api/balance's database work (``read_summary``, what ``service.balance`` calls): BEGIN (with its
    snapshot), the session with its open positions, everything else in one statement (recent rows, the account
    24 h ago from the ledger and the tick log, the first row, the window's sums), ROLLBACK — for an account with a
    day of history and for one younger than a day, named or the only active one."""
    from datetime import timedelta

    import _common

    counter, engine = wire
    young = open_session(engine, spec(), initial_balance=Decimal(1000)).session_id
    read_summary(young, engine=engine)  # the connection prepares its statements once
    summary = read_summary(young, engine=engine)
    assert summary.latest is not None and summary.start.market_time == summary.latest.market_time  # since start
    assert trips(counter, lambda: read_summary(young, engine=engine)) == 4
    read_summary(None, engine=engine)  # the only active account, unnamed: its own statement, prepared once
    assert trips(counter, lambda: read_summary(None, engine=engine)) == 4

    _common.load_ledger(engine, young, 30, spacing=timedelta(hours=2))  # 60 h of history: a real 24 h window
    summary = read_summary(young, engine=engine)
    assert summary.start.market_time < summary.now.market_time - timedelta(hours=23)
    assert trips(counter, lambda: read_summary(young, engine=engine)) == 4


def _checkouts(engine: Engine, counter: WireCounter) -> list[int]:
    marks: list[int] = []
    event.listen(engine, "checkout", lambda *_: marks.append(counter.round_trips))
    return marks


@pytest.mark.parametrize("decision", ["hold", "enter"])
def test_a_one_candle_tick_persists_in_five_round_trips_six_when_it_opens_a_position(wire: tuple[WireCounter, Engine],
                                                              decision: str) -> None:
    counter, engine = wire
    closes = ["100", "101", "102", "103", "104"]
    feed = FakeExchange([candle(i, c) for i, c in enumerate(closes)])
    script = {T0 + HOUR * 3: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(200))} if decision == "enter" else {}
    strategy = ScriptedStrategy(script=script)
    warm = open_session(engine, spec("kraken"), initial_balance=Decimal(1000), start_cursor=T0).session_id
    sid = open_session(engine, spec(), initial_balance=Decimal(1000), start_cursor=T0).session_id

    def tick(i: int, session_id: int = sid) -> None:
        result = tick_session(engine, session_id, feed, clock=fixed_clock(T0 + HOUR * (i + 1)), strategy=strategy)
        assert result.status == "applied" and result.candles_applied == 1

    tick(1)
    tick(2)
    for i in (1, 2, 3):  # another bot makes the same moves first: every statement is prepared on this connection
        tick(i, warm)
    marks = _checkouts(engine, counter)
    total = trips(counter, lambda: tick(3))
    persist = counter.round_trips - marks[1]  # the write transaction: from its checkout to its COMMIT
    assert (total - persist, persist) == (3, 5 if decision == "hold" else 6)
    with read_transaction(engine) as db:  # the tick did what it says
        from chalicelib.db.models import TradingSession

        session = db.get(TradingSession, sid)
        assert session is not None and session.candle_cursor == T0 + HOUR * 3
