# ruff: noqa: F811  (fixtures imported from fanout_testing are requested by name)
"""Each alarm in infra/app-resources.json watches a metric that is emitted where it looks (issue 14): the custom
ones (namespace ATB) are checked against the EMF blobs the dispatcher and the worker really print, with the
same namespace, metric name and dimension names and values, and reaching the threshold when the condition
happens; the AWS ones against the resources they name. Events reach SNS (moto) and a fake Telegram endpoint."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from chalice.test import Client
from fanout_testing import (  # noqa: F401 - fixtures
    NOW,
    AnySymbolExchange,
    drain,
    exchanges,
    queues,
    schedule_event,
)
from sqlalchemy import Engine

from chalicelib import fleet, notify
from chalicelib.bots import BotSpec
from chalicelib.ledger import Actor

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = json.loads((ROOT / "infra" / "app-resources.json").read_text())
ALARMS = {name: r["Properties"] for name, r in TEMPLATE["Resources"].items()
          if r.get("Type") == "AWS::CloudWatch::Alarm"}


def emf_blobs(text: str) -> list[dict[str, Any]]:
    return [b for b in (json.loads(line) for line in text.splitlines() if line.startswith("{")) if "_aws" in b]


def emitted(blobs: list[dict[str, Any]], alarm: dict[str, Any]) -> list[float]:
    """Every value of the alarm's metric in a blob with the alarm's namespace and exactly its dimensions."""
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    values: list[float] = []
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            names = {m["Name"] for m in directive["Metrics"]}
            if (directive["Namespace"] == alarm["Namespace"] and alarm["MetricName"] in names
                    and any(set(ds) == set(dims) for ds in directive["Dimensions"])
                    and all(blob.get(k) == v for k, v in dims.items())):
                value = blob[alarm["MetricName"]]
                values.extend(value if isinstance(value, list) else [value])
    return values


def test_the_template_has_an_alarm_for_each_condition_and_all_notify_the_topic() -> None:
    assert set(ALARMS) == {"StaleBotsAlarm", "TickErrorsAlarm", "DeadLetterAlarm", "Api5xxAlarm",
                           "AuroraAtMaxCapacityAlarm"}
    for props in ALARMS.values():
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_each_custom_alarm_metric_is_emitted_with_its_namespace_name_and_dimensions_and_reaches_the_threshold(
    engine: Engine, queues: dict[str, str], exchanges: AnySymbolExchange, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import app as app_module

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    fleet.add_bot(BotSpec(strategy="ml_basic", symbol="BTCUSDT"), fleet.Decimal(1000), actor=Actor("o"), engine=engine)
    fleet.add_bot(BotSpec(strategy="ml_basic", symbol="ETHUSDT", exchange="kraken"), fleet.Decimal(1000),
                  actor=Actor("o"), engine=engine)  # kraken: the fixture's broken exchange
    client = Client(app_module.app, project_dir=str(tmp_path))
    capsys.readouterr()
    client.lambda_.invoke("tick", schedule_event(client, NOW))
    drain(client, queues["queue"])
    # two dispatches missed: at the third, the healthy bot's newest applied candle is three timeframes old
    client.lambda_.invoke("tick", schedule_event(client, NOW + timedelta(hours=3)))
    blobs = emf_blobs(capsys.readouterr().out)

    custom = {n: a for n, a in ALARMS.items() if a["Namespace"] == "ATB"}
    assert set(custom) == {"StaleBotsAlarm", "TickErrorsAlarm"}
    for name, alarm in custom.items():
        values = emitted(blobs, alarm)
        assert values, f"{name}: no {alarm['MetricName']} emitted with dimensions {alarm['Dimensions']}"
        assert max(values) >= alarm["Threshold"], (name, values)
    # a healthy hour emits the metrics below the threshold (the alarms stay quiet)
    assert emitted(blobs[:1], custom["StaleBotsAlarm"]) == [0.0]
    per_bot = [b for b in blobs if "Bot" in b]
    assert {b["Bot"] for b in per_bot} == {"ml_basic:BTCUSDT:1h", "ml_basic:ETHUSDT:1h"}

    # ATB_PER_BOT_METRICS=false (100+ bots): no per-bot metric, the alarms' fleet metrics still there
    monkeypatch.setenv("ATB_PER_BOT_METRICS", "false")
    drain(client, queues["queue"])
    client.lambda_.invoke("tick", schedule_event(client, NOW + timedelta(hours=4)))
    drain(client, queues["queue"])
    blobs = emf_blobs(capsys.readouterr().out)
    assert not [b for b in blobs if "Bot" in b]
    for alarm in custom.values():
        assert emitted(blobs, alarm)


def test_each_aws_metric_alarm_names_the_resource_that_emits_it() -> None:
    import app as app_module

    resources = TEMPLATE["Resources"]
    # the DLQ alarm watches the queue the tick queue redrives into, the one the worker consumes from
    dlq = ALARMS["DeadLetterAlarm"]
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["TickDeadLetterQueue", "QueueName"]}}]
    redrive = resources["TickQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["TickDeadLetterQueue", "Arn"]}
    source = resources["Worker"]["Properties"]["Events"]["WorkerSqsEventSource"]["Properties"]
    assert source["Queue"] == {"Fn::Sub": "${TickQueue.Arn}"}
    # API Gateway names its metrics after the REST API (Chalice's app name) and the stage
    api = ALARMS["Api5xxAlarm"]
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    stages = {config["stages"][s]["api_gateway_stage"] for s in ("dev", "prod")}
    assert {d["Name"]: d["Value"] for d in api["Dimensions"]} == {"ApiName": app_module.app.app_name,
                                                                  "Stage": stages.pop()}
    assert (api["Namespace"], api["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    # Aurora Serverless v2 reports ServerlessDatabaseCapacity per cluster (atb-<stage> in infra/database.yaml)
    aurora = ALARMS["AuroraAtMaxCapacityAlarm"]
    assert (aurora["Namespace"], aurora["MetricName"]) == ("AWS/RDS", "ServerlessDatabaseCapacity")
    assert aurora["Dimensions"] == [{"Name": "DBClusterIdentifier", "Value": {"Ref": "AuroraClusterId"}}]
    assert 'DBClusterIdentifier: !Sub "atb-${Stage}"' in (ROOT / "infra" / "database.yaml").read_text()


# --- events: SNS and Telegram ----------------------------------------------------------------------------------


def test_trades_and_bot_errors_are_published_to_the_topic(
    engine: Engine, queues: dict[str, str], exchanges: AnySymbolExchange, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import app as app_module

    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="atb-test-alarms")["TopicArn"]
    inbox = sqs.create_queue(QueueName="atb-test-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
    monkeypatch.setenv("ATB_EVENTS_TOPIC_ARN", topic)
    fleet.add_bot(BotSpec(strategy="ml_basic", symbol="BTCUSDT"), fleet.Decimal(1000), actor=Actor("o"), engine=engine)
    fleet.add_bot(BotSpec(strategy="ml_basic", symbol="ETHUSDT", exchange="kraken"), fleet.Decimal(1000),
                  actor=Actor("o"), engine=engine)
    client = Client(app_module.app, project_dir=str(tmp_path))
    client.lambda_.invoke("tick", schedule_event(client, NOW))  # the ml_basic bot enters on this candle
    drain(client, queues["queue"])
    client.lambda_.invoke("tick", schedule_event(client, NOW + timedelta(hours=48)))
    drain(client, queues["queue"])

    events: list[dict[str, Any]] = []
    while got := sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
        for m in got:
            events.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=inbox, ReceiptHandle=m["ReceiptHandle"])
    kinds = [e["event"] for e in events]
    assert "trade_opened" in kinds and "trade_closed" in kinds, kinds
    assert kinds.count("trade_opened") >= kinds.count("trade_closed")
    errors = [e for e in events if e["event"] == "bot_error"]
    assert errors and all(e["bot"] == "ml_basic:ETHUSDT:1h:kraken" and "exchange on fire" in e["error"]
                          for e in errors)
    assert {e["bot"] for e in events if e["event"].startswith("trade_")} == {"ml_basic:BTCUSDT:1h:binance"}


class FakeTelegram(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        FakeTelegram.received.append((self.path, json.loads(self.rfile.read(length))))
        body = json.dumps({"ok": True, "result": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_telegram_delivery_reads_the_token_from_secrets_manager_and_posts_to_the_bot_api(
    queues: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aws_lambda_powertools.utilities import parameters

    server = HTTPServer(("127.0.0.1", 0), FakeTelegram)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeTelegram.received = []
    try:
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="atb-test-telegram", SecretString=json.dumps({"token": "123:fake-token", "chat_id": "42"}))["ARN"]
        parameters.clear_caches()
        monkeypatch.setenv("ATB_TELEGRAM_SECRET_ARN", arn)
        monkeypatch.setenv("ATB_TELEGRAM_API_BASE", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.delenv("ATB_EVENTS_TOPIC_ARN", raising=False)
        sent = notify.publish("drawdown_limit", {"bot": "ml_basic:BTCUSDT:1h:binance", "detail": "20% reached"})
        assert sent == ["telegram"]
        [(path, body)] = FakeTelegram.received
        assert path == "/bot123:fake-token/sendMessage"
        assert body["chat_id"] == "42" and "drawdown limit" in body["text"] and "20% reached" in body["text"]

        # an endpoint that refuses is logged, never raised into the tick
        monkeypatch.setenv("ATB_TELEGRAM_API_BASE", "http://127.0.0.1:9")
        assert notify.publish("bot_error", {"bot": "x", "error": "y"}) == []
    finally:
        server.shutdown()
        parameters.clear_caches()
