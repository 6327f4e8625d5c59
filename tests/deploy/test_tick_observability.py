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

from chalicelib.bot.observability import logger

#: The metric names the scheduled tick emits (chalicelib/bot/scheduled.py); docs/deploy.md lists them.
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
    from chalicelib.bot import observability

    monkeypatch.setattr(observability, "_tracer", None)
    yield


def test_tracing_is_off_by_default_and_the_xray_sdk_is_not_imported() -> None:
    import os
    import subprocess
    import sys

    code = "\n".join([
        "import sys, app",
        "from chalicelib.bot import observability, scheduled",
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
    from chalicelib.bot import observability

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

    from chalicelib.bot import observability

    def no_sdk(*_: object, **__: object) -> None:  # what Tracer() raises when aws-xray-sdk is not installed
        raise ModuleNotFoundError("No module named 'aws_xray_sdk'")

    monkeypatch.setenv("ATB_TRACING", "true")
    monkeypatch.setattr(aws_lambda_powertools, "Tracer", no_sdk)
    client.lambda_.invoke("migrate", {})
    payload = client.lambda_.invoke("tick", schedule_event(client, "2024-06-01T00:01:00Z")).payload
    assert payload["ok"] is True and observability.tracer() is None
    warnings = [line for line in json_lines(log_lines.getvalue()) if "ATB_TRACING is on" in line.get("message", "")]
    assert len(warnings) == 1


# --- the Logs Insights queries of docs/deploy.md, against lines the code really writes -------------------------

def insights_queries() -> list[str]:
    """The Logs Insights queries of docs/deploy.md: the fenced block after "CloudWatch Logs Insights", one query
    per paragraph (comment lines dropped), and the --query-string of the CLI example."""
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = guide.split("CloudWatch Logs Insights", 1)[1]
    block = section.split("```\n", 2)[1]
    queries = [" ".join(line for line in part.splitlines() if line.strip() and not line.startswith("#"))
               for part in block.split("\n\n")]
    queries += re.findall(r"--query-string '([^']+)'", section)
    return [q for q in queries if q]


def query_keys(query: str) -> tuple[set[str], dict[str, str]]:
    """The log keys a query reads (fields, ispresent, stats … by, sort) and its equality filters."""
    import re

    keys: set[str] = set()
    filters: dict[str, str] = {}
    for command in (c.strip() for c in query.split("|")):
        verb, _, rest = command.partition(" ")
        if verb == "fields":
            keys |= {f.strip() for f in rest.split(",")}
        elif verb == "filter":
            keys |= set(re.findall(r"ispresent\((\w+)\)", rest))
            for key, value in re.findall(r'(\w+)\s*=\s*"([^"]*)"', rest):
                keys.add(key)
                filters[key] = value
        elif verb == "stats":
            keys |= set(re.findall(r"\((\w+)\)", rest)) - {""}
            if " by " in rest:
                keys |= {f.strip() for f in rest.split(" by ", 1)[1].split(",")}
        elif verb == "sort":
            keys.add(rest.split()[0])
    return {k for k in keys if not k.startswith("@")}, filters


def test_the_logs_insights_queries_in_the_guide_find_what_the_code_logs(
    aws_stage: AwsStage, replay_exchange: ReplayExchange, client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from atb_testing import captured_logs, json_log_lines

    with captured_logs() as out:
        client.lambda_.invoke("migrate", {})
        result = client.lambda_.invoke("tick", schedule_event(client, "2024-06-01T03:01:00Z")).payload
        from chalicelib.bot import scheduled
        from chalicelib.trading.feeds import FeedError

        class ExchangeDown(ReplayExchange):
            def fetch_closed_candles(self, *args: Any, **kwargs: Any) -> Any:
                raise FeedError("binance: exchange unreachable")

        down = ExchangeDown()
        monkeypatch.setattr(scheduled, "make_feed", lambda _exchange_id: down)  # the next tick: an ERROR line
        client.lambda_.invoke("tick", schedule_event(client, "2024-06-01T04:01:00Z"))
        client.http.get("/api/balance", headers={"Authorization": "Bearer wrong-token-0123456789abcdef0123"})
    lines = json_log_lines(out.getvalue())
    session_id = result["bots"][0]["session_id"]
    queries = insights_queries()
    assert len(queries) == 4, queries
    for query in queries:
        keys, filters = query_keys(query)
        assert keys, query
        # the filter's values as the guide's reader fills them in
        wanted = {k: (str(session_id) if v == "<session id>" else v) for k, v in filters.items()}
        matching = [line for line in lines if all(str(line.get(k)) == v for k, v in wanted.items())]
        if "ispresent(" in query:
            matching = [line for line in matching if all(k in line for k in keys)]
        assert matching, f"no log line matches {query!r}"
        missing = {k for k in keys if not any(k in line for line in matching)}
        assert not missing, f"{query!r} reads {sorted(missing)}, which no matching log line has"
    for line in lines:  # every line of every function carries the Lambda context and its correlation id
        assert {"cold_start", "function_name", "correlation_id"} <= set(line), line
