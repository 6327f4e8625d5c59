"""The deployed shape, end to end on moto + real PostgreSQL: secrets from Secrets Manager, the migrate Lambda,
the scheduled tick and an authenticated API request, through chalice.test.Client as Lambda would call them."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.secrets import SecretsProvider
from chalice.test import Client
from conftest import OWNER_TOKEN, READER_TOKEN, AwsStage, ReplayExchange

import app as app_module
from chalicelib.db.engine import get_engine
from chalicelib.verify import verify

ROOT = Path(__file__).resolve().parents[2]
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


def load_fill_chalice_config() -> Any:
    spec = importlib.util.spec_from_file_location("fill_chalice_config", ROOT / "infra" / "fill_chalice_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client(aws_stage: AwsStage, tmp_path: Path) -> Iterator[Client]:
    """The prod stage exactly as committed, with the infra stack's outputs filled in by
    infra/fill_chalice_config.py (docs/deploy.md step 3) — here the moto secrets' ARNs."""
    fill = load_fill_chalice_config()
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    outputs = {"SubnetIds": "subnet-a,subnet-b", "LambdaSecurityGroupId": "sg-1",
               "DatabaseSecretArn": aws_stage.database_secret_arn, "ApiTokensSecretArn": aws_stage.tokens_secret_arn}
    project = tmp_path / "project"
    (project / ".chalice").mkdir(parents=True)
    for policy in (ROOT / ".chalice").glob("policy-*.json"):
        (project / ".chalice" / policy.name).write_text(policy.read_text())
    (project / ".chalice" / "config.json").write_text(json.dumps(fill.apply_outputs(config, "prod", outputs)))
    with Client(app_module.app, stage_name="prod", project_dir=str(project)) as c:
        yield c


def schedule_event(client: Client, time: str) -> dict[str, Any]:
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                            resources=["arn:aws:events:us-east-1:123456789012:rule/atb-prod-tick"],
                                            region="us-east-1")
    event["time"] = time
    return event


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
