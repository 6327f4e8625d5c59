"""One place decides what a database failure means: busy (retry), unavailable (retry later), configuration
(fix the setting) or schema (migrate); the API turns the first two into 503 + Retry-After, never 500."""

from __future__ import annotations

import sqlite3

import pg8000.exceptions
import pytest
import sqlalchemy.exc as sa

from chalicelib.api.errors import to_response
from chalicelib.db import engine as engine_module
from chalicelib.db.errors import describe
from chalicelib.settings import ConfigurationError


def _pg(code: str) -> sa.DBAPIError:
    return sa.DatabaseError("SELECT 1", {}, pg8000.exceptions.DatabaseError({"C": code, "M": "server says no"}))


@pytest.mark.parametrize(("exc", "kind"), [
    (_pg("55P03"), "busy"),  # lock_timeout
    (_pg("57014"), "busy"),  # statement_timeout
    (_pg("40P01"), "busy"),
    (sa.TimeoutError("QueuePool limit of size 5 overflow 20 reached"), "busy"),
    (sa.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked")), "busy"),
    (_pg("57P01"), "unavailable"),  # admin shutdown (restart)
    (_pg("57P03"), "unavailable"),  # the database system is starting up
    (_pg("53300"), "unavailable"),  # too many connections
    (sa.InterfaceError("x", {}, pg8000.exceptions.InterfaceError("network error")), "unavailable"),
    (ConnectionRefusedError(111, "Connection refused"), "unavailable"),
    (_pg("3D000"), "configuration"),
    (_pg("28P01"), "configuration"),
    (sa.OperationalError("x", {}, sqlite3.OperationalError("unable to open database file")), "configuration"),
    (_pg("42P01"), "schema"),
    (sa.OperationalError("x", {}, sqlite3.OperationalError("no such table: trading_sessions")), "schema"),
])
def test_each_database_failure_is_classified_and_the_api_answers_503_with_retry_after(
        exc: BaseException, kind: str) -> None:
    problem = describe(exc)
    assert problem is not None and problem.kind == kind
    response = to_response(exc)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert "server says no" not in response.body and "SELECT" not in response.body


@pytest.mark.parametrize("exc", [_pg("23505"), _pg("22003"), ValueError("bug"), RuntimeError("bug")])
def test_a_failure_that_is_a_bug_stays_a_500_and_is_not_dressed_up_as_an_outage(exc: BaseException) -> None:
    assert describe(exc) is None
    assert to_response(exc).status_code == 500


def test_the_postgres_timeouts_and_the_pool_timeout_come_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert (engine_module.lock_timeout_ms(), engine_module.statement_timeout_ms()) == (5000, 20000)
    assert engine_module.pool_timeout() == 3
    monkeypatch.setenv("DATABASE_LOCK_TIMEOUT_MS", "250")
    monkeypatch.setenv("DATABASE_STATEMENT_TIMEOUT_MS", "9000")
    monkeypatch.setenv("DATABASE_POOL_TIMEOUT", "1.5")
    assert (engine_module.lock_timeout_ms(), engine_module.statement_timeout_ms()) == (250, 9000)
    assert engine_module.pool_timeout() == 1.5
    for bad in ("0", "-5", "soon", "1.5"):
        monkeypatch.setenv("DATABASE_LOCK_TIMEOUT_MS", bad)
        with pytest.raises(ConfigurationError, match="DATABASE_LOCK_TIMEOUT_MS"):
            engine_module.lock_timeout_ms()


def test_postgres_connections_carry_the_lock_and_statement_timeouts(
        pg_engine: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import Engine

    assert isinstance(pg_engine, Engine)
    with pg_engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "5s"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "20s"
    assert pg_engine.pool.timeout() == 3  # type: ignore[attr-defined]
