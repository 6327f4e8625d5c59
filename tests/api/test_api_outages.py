"""Outages and contention answer 503 JSON with Retry-After, never 500, and never apply half a write.

- A writer blocked on the account lock gives up after ``DATABASE_LOCK_TIMEOUT_MS`` with 503 "busy" while reads
  stay fast; the write was not applied, and a retry with the same Idempotency-Key applies it exactly once.
- With the database server stopped (a throwaway cluster this module starts itself, never the shared server),
  every ``/api/*`` route that needs the database answers 503 JSON with Retry-After within 5 s, and the same
  process serves again as soon as the server is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import atb_testing
import pytest
from api_helpers import WRITE_TOKEN, auth, body, ledger_rows, make_starter, post_json
from chalice.test import Client
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from chalicelib.db import engine as engine_module
from chalicelib.db.migrate import upgrade
from chalicelib.db.models import AccountBalance
from chalicelib.db.uow import read_transaction
from chalicelib.jsonutil import loads_exact

DB_ROUTES = [("GET", "/api/balance"), ("POST", "/api/balance"), ("GET", "/api/balance/history"),
             ("GET", "/api/positions"), ("GET", "/api/trades"), ("GET", "/api/sessions"), ("GET", "/api/health")]


def _send(client: Client, method: str, path: str, key: str | None = None) -> Any:
    if method == "POST":
        headers = post_json(WRITE_TOKEN, **({"Idempotency-Key": key} if key else {}))
        return client.http.post(path, headers=headers, body=body({"amount": 25, "reason": "top up"}))
    return client.http.get(path, headers=auth(WRITE_TOKEN))


def _assert_unavailable(response: Any, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == 503, (response.status_code, response.body)
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["Cache-Control"] == "no-store"
    document = loads_exact(response.body)
    if "error" in document:  # /api/health answers its own report, 503 too
        assert code is None or document["error"]["code"] == code
    return document


def _lock_holder(url: str) -> Any:
    import pg8000.native

    u = make_url(url)
    return pg8000.native.Connection(user=u.username or "postgres", host=u.host or "127.0.0.1", port=u.port or 5432,
                                    database=u.database, password=u.password)


@pytest.fixture
def short_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_LOCK_TIMEOUT_MS", "700")
    engine_module.dispose_engines()
    yield
    engine_module.dispose_engines()


@pytest.mark.postgres_only
def test_a_write_blocked_on_the_account_lock_gets_503_busy_while_reads_stay_fast_and_a_retry_applies_it_once(
        short_lock_timeout: None, pg_database_url: str, client: Client) -> None:
    engine = engine_module.get_engine(pg_database_url)
    session_id = make_starter(engine)("1000")
    before = ledger_rows(engine)
    holder = _lock_holder(pg_database_url)
    try:
        holder.run("BEGIN")
        holder.run("SELECT id FROM trading_sessions WHERE id = :id FOR UPDATE", id=session_id)

        started = time.monotonic()
        response = _send(client, "POST", "/api/balance", key="retry-me")
        waited = time.monotonic() - started
        error = _assert_unavailable(response, "busy")["error"]
        assert "retry" in error["message"]
        assert 0.6 < waited < 3, waited  # gave up after the lock timeout, not after 30 s

        started = time.monotonic()
        read = _send(client, "GET", "/api/balance")
        assert read.status_code == 200 and time.monotonic() - started < 1
        assert ledger_rows(engine) == before  # the refused write left nothing
    finally:
        holder.run("ROLLBACK")
        holder.close()

    first = _send(client, "POST", "/api/balance", key="retry-me")
    again = _send(client, "POST", "/api/balance", key="retry-me")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    with read_transaction(engine) as db:
        deposits = db.scalar(select(func.count()).select_from(AccountBalance).where(AccountBalance.kind == "deposit"))
    assert deposits == 1


@pytest.fixture(scope="module")
def cluster() -> Iterator[atb_testing.ThrowawayCluster]:
    try:
        server = atb_testing.ThrowawayCluster()
    except atb_testing.PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    server.port = atb_testing.free_port()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster_engine(cluster: atb_testing.ThrowawayCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    admin = f"postgresql+pg8000://{cluster.user}@127.0.0.1:{cluster.port}/postgres"
    url = atb_testing.create_database(admin, atb_testing.unique_name("atb_outage"))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "3")
    engine_module.dispose_engines()
    db = engine_module.get_engine(url)
    upgrade(db)
    yield db
    engine_module.dispose_engines()


@pytest.mark.postgres_only
def test_with_the_database_stopped_every_api_route_answers_503_with_retry_after_and_recovers_without_a_restart(
        cluster: atb_testing.ThrowawayCluster, cluster_engine: Engine, client: Client) -> None:
    make_starter(cluster_engine)("1000")
    for method, path in DB_ROUTES:  # warm: the pool holds live connections when the server goes away
        assert _send(client, method, path).status_code in (200, 201), path
    before = ledger_rows(cluster_engine)

    cluster.pause()
    try:
        for method, path in DB_ROUTES:
            started = time.monotonic()
            response = _send(client, method, path)
            _assert_unavailable(response)
            assert time.monotonic() - started < 5, path
        for path in ("/api/me", "/api/openapi.json"):  # need no database
            assert _send(client, "GET", path).status_code == 200
    finally:
        cluster.resume()

    for method, path in DB_ROUTES:
        assert _send(client, method, path).status_code in (200, 201), path
    assert len(ledger_rows(cluster_engine)) == len(before) + 1  # only the POST made after the restart


@pytest.mark.postgres_only
def test_with_every_pooled_connection_busy_a_request_answers_503_busy_within_the_pool_timeout(
        monkeypatch: pytest.MonkeyPatch, pg_database_url: str, client: Client) -> None:
    monkeypatch.setenv("DATABASE_POOL_TIMEOUT", "0.5")
    engine_module.dispose_engines()
    engine = engine_module.get_engine(pg_database_url)
    make_starter(engine)("1000")
    held = []
    try:
        while len(held) < engine.pool.size() + engine.pool._max_overflow:  # type: ignore[attr-defined]
            held.append(engine.connect())
        started = time.monotonic()
        response = _send(client, "GET", "/api/balance")
        assert _assert_unavailable(response, "busy") and time.monotonic() - started < 2
    finally:
        for conn in held:
            conn.close()
    assert _send(client, "GET", "/api/balance").status_code == 200


def test_on_sqlite_a_write_blocked_by_another_writer_gets_503_busy_after_the_lock_timeout(
        short_lock_timeout: None, tmp_path: Any, sqlite_template: Any, monkeypatch: pytest.MonkeyPatch,
        client: Client) -> None:
    import shutil
    import sqlite3

    path = tmp_path / "atb.sqlite3"
    shutil.copy(sqlite_template, path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    engine = engine_module.get_engine(f"sqlite:///{path}")
    make_starter(engine)("1000")
    before = ledger_rows(engine)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the database's write lock
        started = time.monotonic()
        response = _send(client, "POST", "/api/balance", key="sqlite-retry")
        _assert_unavailable(response, "busy")
        assert time.monotonic() - started < 3
        assert _send(client, "GET", "/api/balance").status_code == 200  # readers are not blocked (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert ledger_rows(engine) == before
    assert _send(client, "POST", "/api/balance", key="sqlite-retry").status_code == 201
