"""Dispatcher → SQS → worker → ledger for 50 bots on moto SQS, on SQLite and PostgreSQL (issue 14).

The SQS → Lambda event source mapping is played by :func:`drain`: receive one message (batch size 1), invoke the
worker through chalice's test client with it, delete it when the handler returns, make it visible again at once
when the handler raises. moto applies the queue's redrive policy on receive, so a message received
``maxReceiveCount`` times without being deleted moves to the dead-letter queue — as SQS does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from sqlalchemy import Engine, func, select

from chalicelib import fleet
from chalicelib.bots import BotSpec
from chalicelib.db.models import Bot, TickLog, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.engine import scheduled
from chalicelib.ledger import Actor
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.verify import verify

NOW = datetime(2023, 1, 10, 0, 1, tzinfo=UTC)  # a minute past a 1h close, inside the bundled candles
MAX_RECEIVES = 3
BOTS = 50
BROKEN = "kraken"  # the exchange of the one bot whose tick raises


class AnySymbolExchange(ReplayFeed):
    """The bundled BTCUSDT 1h candles served for whatever symbol a bot trades (50 bots, one price series)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def fetch_closed_candles(self, symbol: str, timeframe: str, since: datetime | None, limit: int,
                             now: datetime) -> list[Any]:
        self.calls += 1
        return super().fetch_closed_candles("BTCUSDT", timeframe, since, limit, now)


class BrokenExchange:
    def fetch_closed_candles(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise RuntimeError("exchange on fire")


@pytest.fixture
def queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("ATB_BOTS", "")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="atb-test-ticks-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)})
        queue = sqs.create_queue(QueueName="atb-test-ticks",
                                 Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "30"})["QueueUrl"]
        monkeypatch.setenv("ATB_TICK_QUEUE_URL", queue)
        yield {"queue": queue, "dlq": dlq}


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> AnySymbolExchange:
    good = AnySymbolExchange()
    broken = BrokenExchange()
    monkeypatch.setattr(scheduled, "make_feed", lambda exchange_id: broken if exchange_id == BROKEN else good)
    return good


def add_bots(engine: Engine) -> list[int]:
    ids = []
    for i in range(BOTS):
        exchange = BROKEN if i == 7 else "binance"
        spec = BotSpec(strategy="ml_basic", symbol=f"C{i:03d}USDT", exchange=exchange)
        ids.append(fleet.add_bot(spec, fleet.Decimal(1000), actor=Actor("owner"), engine=engine)["bot_id"])
    return ids


def schedule_event(client: Client, when: datetime) -> dict[str, Any]:
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                            resources=["arn:aws:events:us-east-1:123456789012:rule/atb-tick"])
    event["time"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def invoke_worker(client: Client, body: str) -> None:
    client.lambda_.invoke("worker", client.events.generate_sqs_event(message_bodies=[body],
                                                                     queue_name="atb-test-ticks"))


def drain(client: Client, queue: str, *, deliver_first_twice: bool = False) -> dict[str, int]:
    """The event source mapping, batch size 1, until the queue is empty."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    counts = {"ok": 0, "failed": 0, "duplicates": 0}
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1,
                                  AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        if not got:
            return counts
        message = got[0]
        try:
            invoke_worker(client, message["Body"])
        except Exception:
            counts["failed"] += 1
            sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=0)
            continue
        if deliver_first_twice and counts["duplicates"] == 0:
            invoke_worker(client, message["Body"])  # at-least-once: the same message delivered again
            counts["duplicates"] += 1
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        counts["ok"] += 1


def dead_letters(queue: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    found = []
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return found
        for m in got:
            found.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])


def ticks_per_bot(engine: Engine) -> dict[int, int]:
    with read_transaction(engine) as db:
        rows = db.execute(select(Bot.id, func.count(TickLog.id)).outerjoin(TradingSession, TradingSession.id == Bot.session_id)
                          .outerjoin(TickLog, TickLog.session_id == TradingSession.id).group_by(Bot.id)).all()
    return {bot_id: count for bot_id, count in rows}


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
    assert view["session_id"] is not None
    with read_transaction(engine) as db:
        session = db.get(TradingSession, view["session_id"])
        assert session is not None and session.initial_balance == 500
        balance_before = session.total_balance
    fleet.set_bot_status(bot["bot_id"], "paused", engine=engine)
    later = client.lambda_.invoke("tick", schedule_event(client, NOW + timedelta(hours=3))).payload
    assert later["queued"] == 0
    # a message already in flight for it is skipped too
    invoke_worker(client, json.dumps(scheduled.tick_message(bot["bot_id"], NOW + timedelta(hours=3),
                                                            NOW + timedelta(hours=3))))
    assert ticks_per_bot(engine) == {bot["bot_id"]: 1}
    with read_transaction(engine) as db:
        session = db.get(TradingSession, view["session_id"])
        assert session is not None and session.status == "active" and session.total_balance == balance_before
    fleet.set_bot_status(bot["bot_id"], "active", engine=engine)
    resumed = client.lambda_.invoke("tick", schedule_event(client, NOW + timedelta(hours=3))).payload
    assert resumed["queued"] == 1
    drain(client, queues["queue"])
    assert ticks_per_bot(engine) == {bot["bot_id"]: 4}  # the three missed candles, caught up in order
