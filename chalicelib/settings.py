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
    """``disable``, ``require`` (encrypted) or ``verify`` (encrypted, CA and host checked). RDS: require."""
    default = "require" if os.environ.get("DATABASE_SECRET_ARN") and not os.environ.get("DATABASE_URL") else ""
    mode = os.environ.get("DATABASE_SSLMODE", default).strip().lower()
    if mode not in ("", "disable", "require", "verify"):
        raise ConfigurationError(f"DATABASE_SSLMODE must be disable, require or verify, not {mode!r}")
    return mode or "disable"
