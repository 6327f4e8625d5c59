# ruff: noqa: F811  (fixtures imported from fanout_testing are requested by name)
"""Dispatcher → SQS → worker → ledger for 50 bots on moto SQS, on SQLite and PostgreSQL (issue 14)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from chalice.test import Client
from fanout_testing import (  # noqa: F401 - fixtures
    BOTS,
    MAX_RECEIVES,
    NOW,
    AnySymbolExchange,
    add_bots,
    dead_letters,
    drain,
    exchanges,
    invoke_worker,
    queues,
    schedule_event,
    ticks_per_bot,
)
from sqlalchemy import Engine

from chalicelib import fleet
from chalicelib.bot import scheduled
from chalicelib.bots import BotSpec
from chalicelib.db.models import TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify


def test_fifty_bots_tick_once_each_a_duplicate_changes_nothing_and_a_failing_bot_goes_to_the_dlq(
    engine: Engine, queues: dict[str, str], exchanges: AnySymbolExchange, tmp_path: Any,
) -> None:
    import app as app_module

    ids = add_bots(engine)
    broken_id = ids[7]
    client = Client(app_module.app, project_dir=str(tmp_path))

    dispatched = client.lambda_.invoke("tick", schedule_event(client, NOW)).payload
    assert dispatched["queued"] == BOTS, dispatched
    assert {b["status"] for b in dispatched["bots"]} == {"queued"}

    counts = drain(client, queues["queue"], deliver_first_twice=True)
    assert counts == {"ok": BOTS - 1, "failed": MAX_RECEIVES, "duplicates": 1}

    per_bot = ticks_per_bot(engine)
    assert per_bot[broken_id] == 0
    assert {b: n for b, n in per_bot.items() if b != broken_id} == {b: 1 for b in ids if b != broken_id}
    assert [m["bot_id"] for m in dead_letters(queues["dlq"])] == [broken_id]
    assert verify(engine).ok

    # The same schedule event again (EventBridge delivers at least once): only the failed bot is still due,
    # and the 49 that committed are left alone.
    again = client.lambda_.invoke("tick", schedule_event(client, NOW)).payload
    assert again["queued"] == 1 and again["bots"][0]["bot_id"] == broken_id
    # a replayed old message for a bot that already applied its candle changes nothing
    before = ticks_per_bot(engine)
    invoke_worker(client, json.dumps(scheduled.tick_message(ids[0], NOW - timedelta(minutes=1), NOW)))
    assert ticks_per_bot(engine) == before

    # An hour later every healthy bot applies the next candle, once.
    drain(client, queues["queue"])
    dead_letters(queues["dlq"])
    client.lambda_.invoke("tick", schedule_event(client, NOW + timedelta(hours=1)))
    drain(client, queues["queue"])
    assert {b: n for b, n in ticks_per_bot(engine).items() if b != broken_id} == {b: 2 for b in ids if b != broken_id}


def test_a_paused_bot_is_not_dispatched_and_keeps_its_account(
    engine: Engine, queues: dict[str, str], exchanges: AnySymbolExchange, tmp_path: Any,
) -> None:
    import app as app_module

    client = Client(app_module.app, project_dir=str(tmp_path))
    bot = fleet.add_bot(BotSpec(strategy="ml_basic", symbol="BTCUSDT"), fleet.Decimal(500), actor=Actor("owner"),
                        engine=engine)
    client.lambda_.invoke("tick", schedule_event(client, NOW))
    drain(client, queues["queue"])
    [view] = fleet.list_bots(engine)
    assert view.session_id is not None
    with read_transaction(engine) as db:
        session = db.get(TradingSession, view.session_id)
        assert session is not None and session.initial_balance == 500
        balance_before = session.total_balance
    fleet.set_bot_status(bot.bot_id, "paused", engine=engine)
    later = client.lambda_.invoke("tick", schedule_event(client, NOW + timedelta(hours=3))).payload
    assert later["queued"] == 0
    # a message already in flight for it is skipped too
    invoke_worker(client, json.dumps(scheduled.tick_message(bot.bot_id, NOW + timedelta(hours=3),
                                                            NOW + timedelta(hours=3))))
    assert ticks_per_bot(engine) == {bot.bot_id: 1}
    with read_transaction(engine) as db:
        session = db.get(TradingSession, view.session_id)
        assert session is not None and session.status == "active" and session.total_balance == balance_before
    fleet.set_bot_status(bot.bot_id, "active", engine=engine)
    resumed = client.lambda_.invoke("tick", schedule_event(client, NOW + timedelta(hours=3))).payload
    assert resumed["queued"] == 1
    drain(client, queues["queue"])
    assert ticks_per_bot(engine) == {bot.bot_id: 4}  # the three missed candles, caught up in order
