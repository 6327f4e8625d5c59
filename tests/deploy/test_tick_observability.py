"""What operators see of a scheduled tick: JSON log lines carrying the session and the candle, and CloudWatch
EMF metrics (powertools prints the EMF blob on stdout; Lambda's log agent turns it into metrics)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from conftest import AwsStage, ReplayExchange, schedule_event

from chalicelib.engine.observability import logger

#: The metric names the scheduled tick emits (chalicelib/engine/scheduled.py); docs/deploy.md lists them.
TICK_METRICS = {"TickDuration", "CandlesApplied", "TradesOpened", "TradesClosed", "TickErrors", "Balance", "Equity"}
#: The fleet's metrics (dimension service only): what the alarms in infra/app-resources.json watch, and counts.
FLEET_METRICS = {"FleetTickErrors", "BotsDue", "StaleBots", "DepositsApplied"}


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The powertools Logger's output, whatever stream it was created with."""
    handler: Any = logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_scheduled_tick_logs_json_with_session_and_candle_time_and_emits_emf_metrics(
    aws_stage: AwsStage, replay_exchange: ReplayExchange, client: Client, log_lines: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client.lambda_.invoke("migrate", {})
    client.lambda_.invoke("tick", schedule_event(client, "2024-06-01T00:01:00Z"))
    capsys.readouterr()
    log_lines.seek(0)
    log_lines.truncate()

    result = client.lambda_.invoke("tick", schedule_event(client, "2024-06-01T03:01:00Z")).payload
    assert result["ok"] is True, result
    session_id = result["bots"][0]["session_id"]

    logs = json_lines(log_lines.getvalue())
    session_lines = [line for line in logs if "session_id" in line]  # recovery report + the tick itself
    assert all(line["session_id"] == session_id and line["symbol"] == "BTCUSDT" for line in session_lines)
    # every line written inside the tick (the engine's tick_log_keys block) names the candle it is at
    tick_lines = [line for line in session_lines if "timeframe" in line]
    assert tick_lines, logs
    for line in tick_lines:
        assert line["candle_time"], line
        assert {"level", "message", "timestamp", "service", "strategy", "request_id"} <= set(line), line
    assert any(line["candle_time"] == "2024-06-01T02:00:00Z" for line in tick_lines), tick_lines

    blobs = [blob for blob in json_lines(capsys.readouterr().out) if "_aws" in blob]
    emf = [blob for blob in blobs if "Bot" in blob]  # the bot's own; the rest are the fleet's (service only)
    assert emf, "no EMF blob printed"
    names = {m["Name"] for blob in emf for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert names == TICK_METRICS
    fleet = {m["Name"] for blob in blobs if "Bot" not in blob for d in blob["_aws"]["CloudWatchMetrics"]
             for m in d["Metrics"]}
    assert fleet == FLEET_METRICS
    blob = emf[-1]
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "ATB"
    assert blob["CandlesApplied"] in (3, [3])
    assert blob["TickErrors"] in (0, [0])
    # one dimension set per bot: each metric name is one billed CloudWatch metric per bot
    assert len(directive["Dimensions"]) == 1


def test_the_service_logger_writes_each_line_once_as_json() -> None:
    import logging

    import app  # noqa: F401 - builds the Chalice app (and its logging setup)

    handlers = [h for h in logging.getLogger("atb").handlers if isinstance(h, logging.StreamHandler)]
    assert handlers == [logger.registered_handler]


# --- optional X-Ray tracing ------------------------------------------------------------------------------------


@pytest.fixture
def fresh_tracer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from chalicelib.engine import observability

    monkeypatch.setattr(observability, "_tracer", None)
    yield


def test_tracing_is_off_by_default_and_the_xray_sdk_is_not_imported() -> None:
    import os
    import subprocess
    import sys

    code = "\n".join([
        "import sys, app",
        "from chalicelib.engine import observability, scheduled",
        "assert observability.tracer() is None",
        "with observability.traced('tick', bot='x'):",
        "    pass",
        "print('aws_xray_sdk' in sys.modules)",
    ])
    env = {k: v for k, v in os.environ.items() if k != "ATB_TRACING"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_with_tracing_on_each_bot_tick_runs_in_an_annotated_subsegment(
    aws_stage: AwsStage, replay_exchange: ReplayExchange, client: Client, monkeypatch: pytest.MonkeyPatch,
    fresh_tracer: None,
) -> None:
    from chalicelib.engine import observability

    monkeypatch.setenv("ATB_TRACING", "true")
    active = observability.tracer()
    assert active is not None and type(active).__name__ == "Tracer"
    opened: list[tuple[str, dict[str, Any]]] = []
    real = active.provider.in_subsegment

    class Spy:
        def __init__(self, name: str) -> None:
            self.name, self.annotations = name, {}
            self.inner = real(name)

        def __enter__(self) -> Spy:
            self.inner.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            opened.append((self.name, self.annotations))
            self.inner.__exit__(*exc)

        def put_annotation(self, key: str, value: Any) -> None:
            self.annotations[key] = value

    monkeypatch.setattr(active.provider, "in_subsegment", Spy)
    client.lambda_.invoke("migrate", {})
    payload = client.lambda_.invoke("tick", schedule_event(client, "2024-06-01T00:01:00Z")).payload
    assert payload["ok"] is True
    assert opened == [("tick", {"bot": b["bot"]}) for b in payload["bots"]]


def test_tracing_asked_for_without_the_xray_sdk_warns_once_and_ticks_anyway(
    aws_stage: AwsStage, replay_exchange: ReplayExchange, client: Client, monkeypatch: pytest.MonkeyPatch,
    fresh_tracer: None, log_lines: io.StringIO,
) -> None:
    import aws_lambda_powertools

    from chalicelib.engine import observability

    def no_sdk(*_: object, **__: object) -> None:  # what Tracer() raises when aws-xray-sdk is not installed
        raise ModuleNotFoundError("No module named 'aws_xray_sdk'")

    monkeypatch.setenv("ATB_TRACING", "true")
    monkeypatch.setattr(aws_lambda_powertools, "Tracer", no_sdk)
    client.lambda_.invoke("migrate", {})
    payload = client.lambda_.invoke("tick", schedule_event(client, "2024-06-01T00:01:00Z")).payload
    assert payload["ok"] is True and observability.tracer() is None
    warnings = [line for line in json_lines(log_lines.getvalue()) if "ATB_TRACING is on" in line.get("message", "")]
    assert len(warnings) == 1
