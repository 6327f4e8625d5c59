"""Every setting of the bot, in one place: the environment is read here and nowhere else.

:class:`Settings` owns every environment variable and every secret reference (the ARNs); :func:`get` parses and
checks them once and every other module receives the values. A bad value fails the same way everywhere, at start:
one :class:`ConfigurationError` whose one line names the variable and says what it must be. The CLI prints that
line and exits 2; the API logs it and answers 503; the scheduled tick logs it and ticks nothing.

Resolution order for the database: ``DATABASE_URL`` (any SQLAlchemy URL), else the RDS-shaped JSON secret named
by ``DATABASE_SECRET_ARN`` (host, port, username, password, dbname), else an embedded SQLite file
``atb.sqlite3`` in the working directory. Secrets are fetched through powertools Parameters and cached for the
life of a warm Lambda container.

A frozen dataclass rather than pydantic-settings (installable here): a dozen scalar variables need no extra
package in the Lambda bundle, and the refusal must be one line naming the variable, which is what
:func:`_number` writes (pydantic's ``ValidationError`` is a multi-line report).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from chalicelib.trading.risk import RiskConfig

DEFAULT_SQLITE_FILE = "atb.sqlite3"
#: The powertools service name when ``POWERTOOLS_SERVICE_NAME`` is unset.
DEFAULT_SERVICE = "atb"

SslMode = Literal["disable", "require", "verify"]
_TRUE = ("1", "true", "yes", "on")


class ConfigurationError(RuntimeError):
    """The environment does not describe a usable configuration; the message says what to set."""


@dataclass(frozen=True)
class Variable:
    """One environment variable the bot reads: its name, its default (as the README shows it) and its meaning."""

    name: str
    default: str
    meaning: str


#: Every variable the bot reads, in the order of the README's configuration table (a test keeps them equal).
VARIABLES: tuple[Variable, ...] = (
    Variable("DATABASE_URL", "sqlite:///./atb.sqlite3", "any SQLAlchemy URL"),
    Variable("DATABASE_SECRET_ARN", "", "the RDS-shaped database secret (AWS)"),
    Variable("DATABASE_SSLMODE", "", "disable, require or verify"),
    Variable("DATABASE_CONNECT_TIMEOUT", "30", "seconds to wait for a connection"),
    Variable("DATABASE_LOCK_TIMEOUT_MS", "5000", "PostgreSQL lock_timeout"),
    Variable("DATABASE_STATEMENT_TIMEOUT_MS", "20000", "PostgreSQL statement_timeout"),
    Variable("DATABASE_POOL_TIMEOUT", "3", "seconds to wait for a pooled connection"),
    Variable("ATB_API_TOKENS", "", "API tokens name:scope:token,…"),
    Variable("ATB_API_TOKENS_SECRET_ARN", "", "the secret holding the API tokens (AWS)"),
    Variable("ATB_SECRET_MAX_AGE", "900", "seconds a fetched secret is reused"),
    Variable("ATB_BOTS", "", "the scheduled tick's bots"),
    Variable("ATB_INITIAL_BALANCE", "1000", "starting capital of a bot's first session in Lambda"),
    Variable("ATB_MAX_CANDLES_PER_TICK", "500", "catch-up bound per tick"),
    Variable("ATB_EXCHANGE_TIMEOUT_MS", "10000", "ccxt request timeout"),
    Variable("ATB_MAX_POSITION_FRACTION", "0.10", "most of equity one new position may cost"),
    Variable("ATB_RISK_PER_TRADE", "0.02", "most of equity one trade may lose at its stop"),
    Variable("ATB_MAX_TOTAL_EXPOSURE", "0.50", "most of equity all open positions together may be worth"),
    Variable("ATB_MAX_ASSET_EXPOSURE", "0.25", "most of equity the positions in one asset may be worth"),
    Variable("ATB_MAX_DRAWDOWN", "0.20", "drawdown of the value per unit at which entries stop"),
    Variable("ATB_MAX_POSITIONS_PER_SYMBOL", "1", "open positions one pair may hold"),
    Variable("ATB_SYMBOL_WAIT_S", "10", "seconds a tick waits for a pair that publishes its candle late"),
    Variable("ATB_OPERATOR", "", "the name the CLI records as updated_by"),
    Variable("ATB_DEBUG", "", "the CLI shows tracebacks"),
    Variable("ATB_TRACING", "", "X-Ray tracing of the tick"),
    Variable("DATABASE_CA_BUNDLE", "", "the CA file the database certificate is verified against"),
    Variable("ATB_TICK_QUEUE_URL", "", "the SQS queue of the fan-out (empty: the dispatcher ticks inline)"),
    Variable("ATB_EVENTS_TOPIC_ARN", "", "the SNS topic for trade, drawdown and bot-error events"),
    Variable("ATB_TELEGRAM_SECRET_ARN", "", "a JSON secret {token, chat_id} for Telegram delivery"),
    Variable("ATB_TELEGRAM_API_BASE", "https://api.telegram.org", "where the Telegram Bot API answers"),
    Variable("ATB_PER_BOT_METRICS", "true", "emit the per-bot metrics (false: fleet metrics only)"),
    Variable("POWERTOOLS_SERVICE_NAME", DEFAULT_SERVICE, "the service key of every log line and metric"),
    Variable("POWERTOOLS_METRICS_NAMESPACE", "ATB", "the CloudWatch namespace of the tick's metrics"),
)
NAMES = frozenset(v.name for v in VARIABLES)


@dataclass(frozen=True)
class Settings:
    """The checked configuration of this process. Secret references are kept as ARNs; their values are fetched
    (and cached) when first needed, so a process that never opens the database never calls Secrets Manager."""

    database_url: str  # "" when unset
    database_secret_arn: str
    database_sslmode: SslMode
    database_connect_timeout: float
    database_lock_timeout_ms: int
    database_statement_timeout_ms: int
    database_pool_timeout: float
    api_tokens: str
    api_tokens_secret_arn: str
    secret_max_age: int
    bots: str
    initial_balance: Decimal
    max_candles_per_tick: int
    exchange_timeout_ms: int
    risk: RiskConfig
    symbol_wait_s: float
    operator: str
    debug: bool
    tracing: bool
    service_name: str
    metrics_namespace: str
    database_ca_bundle: str
    tick_queue_url: str
    events_topic_arn: str
    telegram_secret_arn: str
    telegram_api_base: str
    per_bot_metrics: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse and check ``env``; the first bad value raises :class:`ConfigurationError` naming it."""

        def raw(name: str) -> str:
            return env.get(name, "").strip()

        secret_arn = raw("DATABASE_SECRET_ARN")
        url = raw("DATABASE_URL")
        return cls(
            database_url=url,
            database_secret_arn=secret_arn,
            database_sslmode=_sslmode(raw("DATABASE_SSLMODE"), secret_based=bool(secret_arn) and not url),
            database_connect_timeout=_number(env, "DATABASE_CONNECT_TIMEOUT", 30, "seconds", float),
            database_lock_timeout_ms=_number(env, "DATABASE_LOCK_TIMEOUT_MS", 5000, "milliseconds", int),
            database_statement_timeout_ms=_number(env, "DATABASE_STATEMENT_TIMEOUT_MS", 20000, "milliseconds", int),
            database_pool_timeout=_number(env, "DATABASE_POOL_TIMEOUT", 3, "seconds", float),
            api_tokens=raw("ATB_API_TOKENS"),
            api_tokens_secret_arn=raw("ATB_API_TOKENS_SECRET_ARN"),
            secret_max_age=_number(env, "ATB_SECRET_MAX_AGE", 900, "seconds", int),
            bots=env.get("ATB_BOTS", ""),
            initial_balance=_money(raw("ATB_INITIAL_BALANCE") or "1000", "ATB_INITIAL_BALANCE"),
            max_candles_per_tick=_number(env, "ATB_MAX_CANDLES_PER_TICK", 500, "candles", int),
            exchange_timeout_ms=_number(env, "ATB_EXCHANGE_TIMEOUT_MS", 10000, "milliseconds", int),
            risk=_risk(env),
            symbol_wait_s=_wait(env),
            operator=env.get("ATB_OPERATOR", ""),
            debug=raw("ATB_DEBUG").lower() in ("1", "true", "yes"),
            tracing=raw("ATB_TRACING").lower() in _TRUE,
            service_name=service_name(env),
            metrics_namespace=raw("POWERTOOLS_METRICS_NAMESPACE") or "ATB",
            database_ca_bundle=raw("DATABASE_CA_BUNDLE"),
            tick_queue_url=raw("ATB_TICK_QUEUE_URL"),
            events_topic_arn=raw("ATB_EVENTS_TOPIC_ARN"),
            telegram_secret_arn=raw("ATB_TELEGRAM_SECRET_ARN"),
            telegram_api_base=(raw("ATB_TELEGRAM_API_BASE") or "https://api.telegram.org").rstrip("/"),
            per_bot_metrics=(raw("ATB_PER_BOT_METRICS") or "true").lower() not in ("0", "false", "no", "off"),
        )


_cache: tuple[tuple[str | None, ...], Settings] | None = None


def get() -> Settings:
    """This process's settings, parsed and checked once.

    A Lambda container's or a CLI run's environment does not change, so the variables are parsed once per
    process; the cache is keyed by the raw values of the variables :data:`VARIABLES` names, so a test that sets
    a variable gets settings that say so (no stale value, no reset hook to forget)."""
    global _cache  # noqa: PLW0603 - one parsed configuration per process
    key = tuple(os.environ.get(v.name) for v in VARIABLES)
    cached = _cache
    if cached is not None and cached[0] == key:
        return cached[1]
    loaded = Settings.from_env(os.environ)
    _cache = (key, loaded)
    return loaded


def service_name(env: Mapping[str, str] | None = None) -> str:
    """The powertools service name. Read apart from :func:`get` because the logger is made at import, before the
    settings are checked (so that a bad setting can be logged), and a name cannot be a bad value."""
    source = os.environ if env is None else env
    return source.get("POWERTOOLS_SERVICE_NAME", "").strip() or DEFAULT_SERVICE


def _number(env: Mapping[str, str], name: str, default: int, unit: str, kind: Callable[[str], Any]) -> Any:
    raw = env.get(name, "").strip() or str(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a {'whole ' if kind is int else ''}number of {unit}, "
                                 f"not {raw[:40]!r}") from None
    if not 0 < value < 10**9:
        raise ConfigurationError(f"{name} must be a positive number of {unit}")
    return value


_FRACTIONS = (("ATB_MAX_POSITION_FRACTION", "max_position_fraction"), ("ATB_RISK_PER_TRADE", "risk_per_trade"),
              ("ATB_MAX_TOTAL_EXPOSURE", "max_total_exposure"), ("ATB_MAX_ASSET_EXPOSURE", "max_asset_exposure"),
              ("ATB_MAX_DRAWDOWN", "max_drawdown"))


def _risk(env: Mapping[str, str]) -> RiskConfig:
    """The wallet's risk rules (``chalicelib.trading.risk``); each fraction a decimal in (0, 1]."""
    from decimal import InvalidOperation

    from chalicelib.trading.risk import RiskConfig

    values: dict[str, Any] = {}
    for name, field in _FRACTIONS:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value = Decimal(raw)
        except InvalidOperation:
            value = Decimal("NaN")
        if not (value.is_finite() and 0 < value <= 1):
            raise ConfigurationError(f"{name} must be a fraction of equity above 0 and at most 1 (0.10 = 10 %), "
                                     f"not {raw[:40]!r}")
        values[field] = value
    values["max_positions_per_symbol"] = _number(env, "ATB_MAX_POSITIONS_PER_SYMBOL", 1, "positions", int)
    return RiskConfig(**values)


def _wait(env: Mapping[str, str]) -> float:
    raw = env.get("ATB_SYMBOL_WAIT_S", "").strip() or "10"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 300:
        raise ConfigurationError(f"ATB_SYMBOL_WAIT_S must be a number of seconds from 0 to 300, not {raw[:40]!r}")
    return value


def _money(raw: str, name: str) -> Decimal:
    from chalicelib.money import MoneyError, parse_money

    try:
        return parse_money(raw, field=name)
    except MoneyError as exc:
        raise ConfigurationError(str(exc)) from None


def _sslmode(raw: str, *, secret_based: bool) -> SslMode:
    mode = raw.lower() or ("verify" if secret_based else "disable")
    if mode not in ("disable", "require", "verify"):
        raise ConfigurationError(f"DATABASE_SSLMODE must be disable, require or verify, not {mode!r}")
    return mode  # type: ignore[return-value]


def default_sqlite_url(directory: Path | None = None) -> str:
    path = (directory or Path.cwd()) / DEFAULT_SQLITE_FILE
    return f"sqlite:///{path}"


def get_secret_text(arn: str, what: str = "secret") -> str:
    """A secret's text from Secrets Manager, cached (powertools Parameters) so a warm container asks once."""
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(arn, max_age=get().secret_max_age)
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
    current = get()
    if current.database_url:
        return current.database_url
    if current.database_secret_arn:
        return database_url_from_secret(get_secret_json(current.database_secret_arn))
    return default_sqlite_url()


def database_sslmode() -> SslMode:
    """``disable``, ``require`` (encrypted) or ``verify`` (encrypted, CA and host checked against
    ``DATABASE_CA_BUNDLE``). The default for a database read from the secret (RDS) is ``verify``."""
    return get().database_sslmode


def database_ca_bundle() -> str | None:
    """``DATABASE_CA_BUNDLE``: the CA file the database certificate is verified against (the RDS bundle,
    docs/deploy.md); unset: the system's CAs. Checked when a TLS connection is made (not when the settings load: the
    stages name the bundle's path in the package, and a process that never connects to PostgreSQL needs no file);
    a path that is not a file is a configuration error, so the certificate is never left unverified."""
    path = get().database_ca_bundle
    if path and not Path(path).is_file():
        raise ConfigurationError(f"DATABASE_CA_BUNDLE={path} is not a file: put the RDS CA bundle there "
                                 "(docs/deploy.md, step 0) or unset it")
    return path or None


def api_token_text() -> str:
    """The API token list: ``ATB_API_TOKENS`` when set (the explicit local value wins, like ``DATABASE_URL``),
    else the secret named by ``ATB_API_TOKENS_SECRET_ARN``, else empty."""
    current = get()
    if current.api_tokens:
        return current.api_tokens
    if not current.api_tokens_secret_arn:
        return ""
    return get_secret_text(current.api_tokens_secret_arn, "the API token secret")
