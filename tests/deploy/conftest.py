"""Fixtures for the deploy tests: moto-backed AWS, an empty PostgreSQL database, a replay exchange."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import atb_testing
import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from chalice.test import Client
from moto import mock_aws
from sqlalchemy.engine import make_url

import app as app_module
from chalicelib.bot import scheduled
from chalicelib.db import engine as engine_module
from chalicelib.trading.feeds import ReplayFeed

ROOT = Path(__file__).resolve().parents[2]

#: Two tokens in the secret's ``name:scope:token`` format.
OWNER_TOKEN = "owner-token-0123456789abcdef0123456789"
READER_TOKEN = "reader-token-0123456789abcdef012345678"
TOKENS = f"owner:write:{OWNER_TOKEN},dashboard:read:{READER_TOKEN}"


@dataclass
class AwsStage:
    """What `chalice deploy` would give the Lambdas: two secret ARNs in the environment."""

    database_secret_arn: str
    tokens_secret_arn: str
    database_url: str


@pytest.fixture
def empty_pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A brand-new, unmigrated PostgreSQL database (the migrate Lambda has to create the schema)."""
    name = atb_testing.unique_name("atb_deploy")
    url = atb_testing.create_database(postgres_admin_url, name)
    try:
        yield url
    finally:
        engine_module.dispose_engines()
        atb_testing.drop_database(postgres_admin_url, name)


@pytest.fixture
def aws_stage(empty_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStage]:
    """moto Secrets Manager holding the RDS-shaped DB secret (real local credentials) and the API tokens;
    the environment set as in a deployed stage (no DATABASE_URL, no ATB_API_TOKENS)."""
    for name in ("DATABASE_URL", "ATB_API_TOKENS", "POWERTOOLS_METRICS_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("DATABASE_SSLMODE", "disable")
    parameters.clear_caches()
    engine_module.dispose_engines()
    with mock_aws():
        url = make_url(empty_pg_url)
        client = boto3.client("secretsmanager", region_name="us-east-1")
        db_secret = {"engine": "postgres", "host": url.host, "port": url.port or 5432, "username": url.username,
                     # the local server trusts 127.0.0.1 and never asks for it; RDS secrets always carry one
                     "password": url.password or "unused-under-trust-auth", "dbname": url.database}
        db_arn = client.create_secret(Name="atb-test-db", SecretString=json.dumps(db_secret))["ARN"]
        tokens_arn = client.create_secret(Name="atb-test-api-tokens", SecretString=TOKENS)["ARN"]
        monkeypatch.setenv("DATABASE_SECRET_ARN", db_arn)
        monkeypatch.setenv("ATB_API_TOKENS_SECRET_ARN", tokens_arn)
        yield AwsStage(db_arn, tokens_arn, empty_pg_url)
        engine_module.dispose_engines()
    parameters.clear_caches()


class ReplayExchange(ReplayFeed):
    """The bundled BTCUSDT 1h candles served like an exchange: whatever has closed at ``now``."""

    exchange_id = "binance"


@pytest.fixture
def replay_exchange(monkeypatch: pytest.MonkeyPatch) -> ReplayExchange:
    """Every bot of the scheduled tick trades against the replay exchange instead of ccxt."""
    feed = ReplayExchange()
    monkeypatch.setattr(scheduled, "make_feed", lambda _exchange_id: feed)
    monkeypatch.setenv("ATB_BOTS", "ma_crossover:BTCUSDT:1h:binance")
    return feed


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
