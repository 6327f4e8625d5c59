"""The deployed shape, end to end on moto + real PostgreSQL: secrets from Secrets Manager, the migrate Lambda,
the scheduled tick and an authenticated API request, through chalice.test.Client as Lambda would call them."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.secrets import SecretsProvider
from chalice.test import Client
from conftest import OWNER_TOKEN, READER_TOKEN, AwsStage, ReplayExchange, schedule_event

from chalicelib.db.engine import get_engine
from chalicelib.verify import verify

TICK_1 = "2024-06-01T00:01:00Z"
TICK_2 = "2024-06-01T01:01:00Z"


@pytest.fixture
def secret_fetches(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times each secret was actually fetched from Secrets Manager (powertools cache misses)."""
    calls: dict[str, int] = {}
    original = SecretsProvider._get

    def counting_get(self: SecretsProvider, name: str, **kwargs: Any) -> Any:
        calls[name] = calls.get(name, 0) + 1
        return original(self, name, **kwargs)

    monkeypatch.setattr(SecretsProvider, "_get", counting_get)
    return calls


def get_balance(client: Client, token: str) -> Any:
    return client.http.get("/api/balance", headers={"Authorization": f"Bearer {token}"})


def test_the_app_migrates_ticks_and_serves_the_balance_with_secrets_fetched_once_per_warm_container(
    aws_stage: AwsStage, replay_exchange: ReplayExchange, secret_fetches: dict[str, int], client: Client
) -> None:
    # 1. the migrate Lambda builds the schema in the empty database named by the secret
    migrated = client.lambda_.invoke("migrate", {}).payload
    assert migrated["before"] is None
    assert migrated["after"] == migrated["head"] is not None

    # 2. two scheduled ticks an hour apart: the session opens, then the next closed candle is applied
    first = client.lambda_.invoke("tick", schedule_event(client, TICK_1)).payload
    assert first["ok"] is True, first
    second = client.lambda_.invoke("tick", schedule_event(client, TICK_2)).payload
    assert second["ok"] is True, second
    assert second["bots"][0]["candles_applied"] >= 1, second
    assert second["bots"][0]["cursor"].startswith("2024-06-01T00:00"), second

    # 3. an authenticated GET /api/balance answers from the same database; no token / bad token is refused
    response = get_balance(client, READER_TOKEN)
    assert response.status_code == 200, response.body
    body = json.loads(response.body)
    assert body, body
    assert get_balance(client, "not-a-token").status_code == 401
    assert client.http.get("/api/balance").status_code == 401

    # 4. more requests and ticks in the same warm container
    for _ in range(5):
        assert get_balance(client, OWNER_TOKEN).status_code == 200
    assert client.lambda_.invoke("tick", schedule_event(client, TICK_2)).payload["ok"] is True
    assert client.lambda_.invoke("migrate", {}).payload["before"] == migrated["head"]

    # each secret was fetched from Secrets Manager exactly once for all of that
    assert secret_fetches == {aws_stage.database_secret_arn: 1, aws_stage.tokens_secret_arn: 1}

    # and the warm container no longer needs Secrets Manager at all: delete both secrets, keep serving
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    for arn in (aws_stage.database_secret_arn, aws_stage.tokens_secret_arn):
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    assert get_balance(client, READER_TOKEN).status_code == 200
    assert client.lambda_.invoke("tick", schedule_event(client, "2024-06-01T02:01:00Z")).payload["ok"] is True
    assert verify(get_engine()).ok


def test_the_migrate_lambda_is_idempotent_and_reports_the_revisions(
    aws_stage: AwsStage, client: Client
) -> None:
    first = client.lambda_.invoke("migrate", {}).payload
    again = client.lambda_.invoke("migrate", {}).payload
    assert first["before"] is None and first["after"] == first["head"]
    assert again == {"before": first["head"], "after": first["head"], "head": first["head"]}
