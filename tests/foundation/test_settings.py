"""Settings: DATABASE_URL wins, then the RDS-shaped secret (fetched once per warm container), then SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from sqlalchemy import text
from sqlalchemy.engine import make_url

from chalicelib import settings
from chalicelib.db.engine import get_engine


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    parameters.clear_caches()
    with mock_aws():
        yield
    parameters.clear_caches()


def test_without_configuration_the_database_is_an_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    monkeypatch.chdir(tmp_path)
    assert settings.database_url() == f"sqlite:///{tmp_path / 'atb.sqlite3'}"


def test_database_url_wins_over_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.sqlite3")
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope")
    assert settings.database_url() == "sqlite:///x.sqlite3"


def test_the_database_secret_is_read_once_and_connects_to_real_postgres(
    aws: None, monkeypatch: pytest.MonkeyPatch, pg_database_url: str
) -> None:
    pg = make_url(pg_database_url)
    client = boto3.client("secretsmanager")
    arn = client.create_secret(Name="atb-test-db", SecretString=json.dumps({
        "engine": "postgres", "host": pg.host, "port": pg.port, "username": pg.username,
        "password": "unused-with-trust-auth", "dbname": pg.database,
    }))["ARN"]
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("DATABASE_SSLMODE", "disable")  # the local server has no TLS; RDS gets `require`

    url = settings.database_url()
    assert make_url(url).database == pg.database and make_url(url).drivername == "postgresql+pg8000"
    with get_engine(url).connect() as conn:
        from chalicelib.db.migrate import schema_status

        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == schema_status(
            get_engine(url)).head

    client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    assert settings.database_url() == url  # served from the warm cache: Secrets Manager is not asked again


def test_a_secret_without_a_host_is_a_clear_configuration_error(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = boto3.client("secretsmanager").create_secret(
        Name="atb-broken", SecretString=json.dumps({"username": "u", "password": "p"}))["ARN"]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    with pytest.raises(settings.ConfigurationError, match="database secret lacks host"):
        settings.database_url()


def test_a_missing_secret_names_the_secret(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone")
    with pytest.raises(settings.ConfigurationError, match=r"cannot read secret .*gone"):
        settings.database_url()


def test_verify_sslmode_is_the_default_for_secret_based_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_SSLMODE", raising=False)
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:x")
    assert settings.database_sslmode() == "verify"
    monkeypatch.setenv("DATABASE_SSLMODE", "sometimes")
    with pytest.raises(settings.ConfigurationError):
        settings.database_sslmode()


def test_verify_checks_the_certificate_and_host_against_the_configured_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    import ssl

    import certifi

    from chalicelib.db import engine as engine_module

    monkeypatch.setenv("DATABASE_CA_BUNDLE", certifi.where())
    context = engine_module._ssl_context("verify")
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) > 10  # the bundle's CAs, loaded instead of the system store
    monkeypatch.setenv("DATABASE_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(settings.ConfigurationError, match="DATABASE_CA_BUNDLE"):  # loudly, never unverified
        engine_module._ssl_context("verify")
