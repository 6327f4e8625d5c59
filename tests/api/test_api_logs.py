"""API log lines in Lambda are powertools JSON carrying the Lambda context and a correlation id per request."""

from __future__ import annotations

import uuid

import pytest
from api_helpers import READ_TOKEN, auth
from atb_testing import captured_logs, json_log_lines
from chalice.test import Client

from chalicelib import logs


def test_an_api_error_line_is_powertools_json_with_the_lambda_context_and_the_request_correlation_id(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken token list: every request answers 503 and logs why (one error line per request).
    monkeypatch.setenv("ATB_API_TOKENS", "owner:write:short")
    with captured_logs() as out:
        first = client.http.get("/api/balance", headers=auth(READ_TOKEN))
        second = client.http.get("/api/sessions", headers=auth(READ_TOKEN))
    assert first.status_code == second.status_code == 503
    errors = [line for line in json_log_lines(out.getvalue()) if line["level"] == "ERROR"]
    assert len(errors) == 2, out.getvalue()
    for line in errors:
        assert {"cold_start", "function_name", "function_request_id", "correlation_id", "service",
                "timestamp", "location"} <= set(line), line
        assert line["service"] == logs.SERVICE and line["function_name"] == "api_handler"
        assert line["cold_start"] in (True, False)
        assert "API token entry 1" in line["message"]
        uuid.UUID(line["correlation_id"])  # chalice's local gateway sends no request id: one is generated
    assert errors[0]["correlation_id"] != errors[1]["correlation_id"]  # one per request


def test_the_api_gateway_request_id_is_the_correlation_id() -> None:
    seen: list[object] = []

    def serve(event: object, context: object) -> dict[str, object]:
        logs.logger.info("served")
        seen.append(logs.logger.get_correlation_id())
        return {}

    class Context:
        function_name, memory_limit_in_mb, invoked_function_arn, aws_request_id = "atb-dev", 512, "arn:x", "r-1"

    wrapped = logs.lambda_entry(logs.api_gateway_request_id)(serve)
    with captured_logs() as out:
        wrapped({"requestContext": {"requestId": "c0ffee-42"}}, Context())
    assert seen == ["c0ffee-42"]
    (line,) = [x for x in json_log_lines(out.getvalue()) if x["message"] == "served"]
    assert line["correlation_id"] == "c0ffee-42" and line["function_name"] == "atb-dev"
