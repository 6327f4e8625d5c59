"""Where the bot finds its database and its API tokens: the environment locally, Secrets Manager in AWS.

Resolution order for the database: ``DATABASE_URL`` (any SQLAlchemy URL), else the RDS-shaped JSON secret named
by ``DATABASE_SECRET_ARN`` (host, port, username, password, dbname), else an embedded SQLite file
``atb.sqlite3`` in the working directory. Secrets are fetched through powertools Parameters and cached for the
life of a warm Lambda container.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_SQLITE_FILE = "atb.sqlite3"
#: How long a fetched secret is reused before Secrets Manager is asked again (seconds).
SECRET_MAX_AGE = int(os.environ.get("ATB_SECRET_MAX_AGE", "900"))


class ConfigurationError(RuntimeError):
    """The environment does not describe a usable configuration; the message says what to set."""


def default_sqlite_url(directory: Path | None = None) -> str:
    path = (directory or Path.cwd()) / DEFAULT_SQLITE_FILE
    return f"sqlite:///{path}"


def get_secret_text(arn: str, what: str = "secret") -> str:
    """A secret's text from Secrets Manager, cached (powertools Parameters) so a warm container asks once."""
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(arn, max_age=SECRET_MAX_AGE)
    except Exception as exc:  # boto errors: say which secret and why, on one line
        raise ConfigurationError(f"cannot read {what} {arn}: {exc}") from exc
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def get_secret_json(arn: str) -> dict[str, Any]:
    """A JSON object secret (RDS's shape), through :func:`get_secret_text`'s cache."""
    try:
        value = json.loads(get_secret_text(arn))
    except json.JSONDecodeError:
        raise ConfigurationError(f"secret {arn} is not JSON") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"secret {arn} must be a JSON object, got {type(value).__name__}")
    return value


def database_url_from_secret(secret: dict[str, Any]) -> str:
    """Build a pg8000 URL from RDS's secret shape (host, port, username, password, dbname)."""
    from sqlalchemy.engine import URL

    missing = [k for k in ("host", "username", "password") if not secret.get(k)]
    if missing:
        raise ConfigurationError(f"database secret lacks {', '.join(missing)}")
    url = URL.create(
        "postgresql+pg8000",
        username=str(secret["username"]),
        password=str(secret["password"]),
        host=str(secret["host"]),
        port=int(secret.get("port") or 5432),
        database=str(secret.get("dbname") or secret.get("database") or "postgres"),
    )
    return url.render_as_string(hide_password=False)


def database_url() -> str:
    """The SQLAlchemy URL of the database this process should use."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    arn = os.environ.get("DATABASE_SECRET_ARN", "").strip()
    if arn:
        return database_url_from_secret(get_secret_json(arn))
    return default_sqlite_url()


def database_sslmode() -> str:
    """``disable``, ``require`` (encrypted) or ``verify`` (encrypted, CA and host checked against
    ``DATABASE_CA_BUNDLE``). The default for a database read from the secret (RDS) is ``verify``."""
    default = "verify" if os.environ.get("DATABASE_SECRET_ARN") and not os.environ.get("DATABASE_URL") else ""
    mode = os.environ.get("DATABASE_SSLMODE", default).strip().lower()
    if mode not in ("", "disable", "require", "verify"):
        raise ConfigurationError(f"DATABASE_SSLMODE must be disable, require or verify, not {mode!r}")
    return mode or "disable"


# --- fan-out, notifications, bots (issue 14) -------------------------------------------------------------------


def bots_text() -> str:
    """``ATB_BOTS``: the bots to seed on first deploy (``strategy:symbol[:timeframe[:exchange]]``, comma-separated)."""
    return os.environ.get("ATB_BOTS", "")


def initial_balance_text() -> str:
    """``ATB_INITIAL_BALANCE``: the initial capital of a bot seeded from ``ATB_BOTS`` (default 1000)."""
    return os.environ.get("ATB_INITIAL_BALANCE", "1000")


def max_candles_per_tick_text() -> str | None:
    return os.environ.get("ATB_MAX_CANDLES_PER_TICK")


def tick_queue_url() -> str:
    """``ATB_TICK_QUEUE_URL``: the SQS queue the dispatcher sends one message per due bot to. Empty: the
    dispatcher ticks each due bot itself (one bot, no extra configuration)."""
    return os.environ.get("ATB_TICK_QUEUE_URL", "").strip()


def events_topic_arn() -> str:
    """``ATB_EVENTS_TOPIC_ARN``: the SNS topic for trade, drawdown and bot-error events. Empty: not published."""
    return os.environ.get("ATB_EVENTS_TOPIC_ARN", "").strip()


def telegram_secret_arn() -> str:
    """``ATB_TELEGRAM_SECRET_ARN``: a JSON secret ``{"token": …, "chat_id": …}``; empty: no Telegram delivery."""
    return os.environ.get("ATB_TELEGRAM_SECRET_ARN", "").strip()


def telegram_api_base() -> str:
    """``ATB_TELEGRAM_API_BASE``: where the Bot API answers (tests point it at a local fake endpoint)."""
    return os.environ.get("ATB_TELEGRAM_API_BASE", "https://api.telegram.org").strip().rstrip("/")


def database_ca_bundle() -> str | None:
    """``DATABASE_CA_BUNDLE``: the CA file the database certificate is verified against (the RDS bundle,
    docs/deploy.md); unset: the system's CAs. A path that does not exist is a configuration error."""
    path = os.environ.get("DATABASE_CA_BUNDLE", "").strip()
    if path and not Path(path).is_file():
        raise ConfigurationError(f"DATABASE_CA_BUNDLE={path} is not a file: put the RDS CA bundle there "
                                 "(docs/deploy.md, step 0) or unset it")
    return path or None


def exchange_timeout_ms_text() -> str:
    return os.environ.get("ATB_EXCHANGE_TIMEOUT_MS", "10000")


def per_bot_metrics() -> bool:
    """``ATB_PER_BOT_METRICS``: emit the 7 per-bot metrics (dimension ``Bot``; 7 billed custom metrics per bot).
    ``false`` keeps only the fleet metrics: what 100+ bots can afford (docs/scale.md). Default true."""
    return os.environ.get("ATB_PER_BOT_METRICS", "true").strip().lower() not in ("0", "false", "no", "off")
