"""Settings: DATABASE_URL wins, then the RDS-shaped secret (fetched once per warm container), then SQLite."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
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
# --- one Settings: every variable read in one place, a bad value refused the same way everywhere ---------------

BAD_VALUES = [
    ("DATABASE_SSLMODE", "sometimes"),
    ("DATABASE_CONNECT_TIMEOUT", "soon"),
    ("DATABASE_LOCK_TIMEOUT_MS", "1.5"),
    ("DATABASE_STATEMENT_TIMEOUT_MS", "-1"),
    ("DATABASE_POOL_TIMEOUT", "0"),
    ("ATB_SECRET_MAX_AGE", "a while"),
    ("ATB_INITIAL_BALANCE", "lots"),
    ("ATB_MAX_CANDLES_PER_TICK", "many"),
    ("ATB_EXCHANGE_TIMEOUT_MS", "10s"),
    ("ATB_MAX_TOTAL_EXPOSURE", "1.5"),
    ("ATB_MAX_ASSET_EXPOSURE", "25%"),
    ("ATB_MAX_POSITION_FRACTION", "0"),
    ("ATB_RISK_PER_TRADE", "NaN"),
    ("ATB_MAX_DRAWDOWN", "-0.2"),
    ("ATB_MAX_POSITIONS_PER_SYMBOL", "two"),
    ("ATB_SYMBOL_WAIT_S", "forever"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(settings.ConfigurationError) as refused:
        settings.Settings.from_env({name: value})
    message = str(refused.value)
    assert name in message and "\n" not in message


def test_the_settings_are_parsed_once_while_the_environment_stays_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_EXCHANGE_TIMEOUT_MS", "2500")
    first = settings.get()
    assert first.exchange_timeout_ms == 2500 and settings.get() is first
    monkeypatch.setenv("ATB_EXCHANGE_TIMEOUT_MS", "3000")
    assert settings.get().exchange_timeout_ms == 3000


def test_defaults_match_the_documented_ones() -> None:
    config = settings.Settings.from_env({})
    assert (config.database_connect_timeout, config.database_lock_timeout_ms, config.database_statement_timeout_ms,
            config.database_pool_timeout) == (30, 5000, 20000, 3)
    assert (config.secret_max_age, config.initial_balance, config.max_candles_per_tick,
            config.exchange_timeout_ms) == (900, 1000, 500, 10000)
    assert config.database_sslmode == "disable" and not config.debug and not config.tracing
    assert (config.service_name, config.metrics_namespace) == ("atb", "ATB")
    risk = config.risk
    assert (risk.max_position_fraction, risk.risk_per_trade, risk.max_total_exposure, risk.max_asset_exposure,
            risk.max_drawdown, risk.max_positions_per_symbol, config.symbol_wait_s) == (
        Decimal("0.10"), Decimal("0.02"), Decimal("0.50"), Decimal("0.25"), Decimal("0.20"), 1, 10.0)


def test_the_wallets_risk_rules_reach_the_tick_from_the_environment() -> None:
    from chalicelib.bot.tick import TickSettings

    config = settings.Settings.from_env({"ATB_MAX_TOTAL_EXPOSURE": "0.3", "ATB_MAX_ASSET_EXPOSURE": "0.15",
                                         "ATB_MAX_POSITIONS_PER_SYMBOL": "2", "ATB_SYMBOL_WAIT_S": "2.5",
                                         "ATB_MAX_CANDLES_PER_TICK": "40"})
    tick = TickSettings.from_settings(config)
    assert (tick.risk.max_total_exposure, tick.risk.max_asset_exposure, tick.risk.max_positions_per_symbol,
            tick.symbol_wait_s, tick.max_candles_per_tick) == (Decimal("0.3"), Decimal("0.15"), 2, 2.5, 40)
    assert TickSettings.from_settings(config, max_candles_per_tick=7).max_candles_per_tick == 7


@pytest.mark.parametrize(("name", "value"), [BAD_VALUES[2], BAD_VALUES[7], BAD_VALUES[8]])
def test_the_cli_refuses_a_bad_setting_with_one_line_and_exit_2(name: str, value: str, tmp_path: Path) -> None:
    import os

    env = {**os.environ, name: value, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    done = subprocess.run([sys.executable, "-m", "chalicelib.cli", "sessions", "list"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and name in done.stderr
    assert not (tmp_path / "x.sqlite3").exists()


def test_the_scheduled_tick_refuses_a_bad_setting_with_one_logged_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from atb_testing import captured_logs, json_log_lines

    from chalicelib.bot.scheduled import run_scheduled_tick

    monkeypatch.setenv("ATB_BOTS", "ma_crossover:BTCUSDT:1h:binance")
    monkeypatch.setenv("ATB_EXCHANGE_TIMEOUT_MS", "10s")
    with captured_logs() as logs:
        payload = run_scheduled_tick(event_time="2024-01-01T00:01:00Z")
    assert payload["ok"] is False and payload["bots"] == [] and "ATB_EXCHANGE_TIMEOUT_MS" in payload["error"]
    (line,) = [e for e in json_log_lines(logs.getvalue()) if "ATB_EXCHANGE_TIMEOUT_MS" in e["message"]]
    assert line["level"] == "ERROR" and "\n" not in line["message"]


def test_the_readme_configuration_table_lists_exactly_the_settings() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`)? \|", section, flags=re.MULTILINE)
    names = {n for pair in documented for n in pair if n}
    assert names == set(settings.NAMES)


def test_no_module_but_settings_reads_the_environment() -> None:
    root = Path(__file__).resolve().parents[2]
    readers = sorted(str(p.relative_to(root)) for p in (root / "chalicelib").rglob("*.py")
                     if "os.environ" in p.read_text(encoding="utf-8") or "getenv" in p.read_text(encoding="utf-8"))
    assert readers == ["chalicelib/settings.py"]
