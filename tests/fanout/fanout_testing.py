"""Shared by the fan-out tests: moto SQS queues, fake exchanges, and the SQS → Lambda event source mapping.

The SQS → Lambda event source mapping is played by :func:`drain`: receive one message (batch size 1), invoke the
worker through chalice's test client with it, delete it when the handler returns, make it visible again at once
when the handler raises. moto applies the queue's redrive policy on receive, so a message received
``maxReceiveCount`` times without being deleted moves to the dead-letter queue — as SQS does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from sqlalchemy import Engine, func, select

from chalicelib import fleet
from chalicelib.bot import scheduled
from chalicelib.bots import BotSpec
from chalicelib.db.models import Bot, TickLog, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.ledger import Actor
from chalicelib.trading.feeds import ReplayFeed

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

    def market_rules(self, symbol: str) -> Any:
        return super().market_rules("BTCUSDT")


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
        ids.append(fleet.add_bot(spec, fleet.Decimal(1000), actor=Actor("owner"), engine=engine).bot_id)
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
        rows = db.execute(select(Bot.id, func.count(TickLog.id))
                          .outerjoin(TradingSession, TradingSession.id == Bot.session_id)
                          .outerjoin(TickLog, TickLog.session_id == TradingSession.id).group_by(Bot.id)).all()
    return {bot_id: count for bot_id, count in rows}


