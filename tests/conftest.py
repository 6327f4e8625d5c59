"""Fixtures: every persistence test runs on SQLite and on real PostgreSQL, each test on a clean database.

PostgreSQL comes from TEST_DATABASE_URL, else the local server on 127.0.0.1:5432, else a throwaway cluster
started with the local initdb/pg_ctl; if none can be had the run fails and says what is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import atb_testing
import pytest
from sqlalchemy import Engine

from chalicelib.db import engine as engine_module
from chalicelib.db.migrate import upgrade

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ATB")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "atb")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    try:
        url, cluster = atb_testing.find_postgres()
    except atb_testing.PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield url
    if cluster is not None:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """A database migrated to head once per run; each test copies it (CREATE DATABASE … TEMPLATE)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"atb_template_{worker}_{os.getpid()}"
    url = atb_testing.create_database(postgres_admin_url, name)
    upgrade(engine_module.get_engine(url))
    engine_module.dispose_engines()
    yield name
    atb_testing.drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(engine_module.get_engine(url))
    engine_module.dispose_engines()
    return path


def _fresh_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "atb.sqlite3"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    admin = request.getfixturevalue("postgres_admin_url")
    template_name = request.getfixturevalue("postgres_template")
    name = atb_testing.unique_name("atb_test")
    url = atb_testing.create_database(admin, name, template=template_name)
    try:
        yield url
    finally:
        engine_module.dispose_engines()
        atb_testing.drop_database(admin, name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean, migrated database (both kinds); DATABASE_URL points at it for code that reads settings."""
    for url in _fresh_database(request.param, request, tmp_path):
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        engine_module.dispose_engines()


@pytest.fixture
def pg_database_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean, migrated PostgreSQL database only (row locks, SKIP LOCKED, EXPLAIN)."""
    for url in _fresh_database("postgres", request, tmp_path):
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        engine_module.dispose_engines()


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       db_kind: str) -> Iterator[str]:
    """An empty (unmigrated) database of kind ``db_kind``."""
    if db_kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        engine_module.dispose_engines()
        return
    admin = request.getfixturevalue("postgres_admin_url")
    name = atb_testing.unique_name("atb_empty")
    url = atb_testing.create_database(admin, name)
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        yield url
    finally:
        engine_module.dispose_engines()
        atb_testing.drop_database(admin, name)


@pytest.fixture
def engine(database_url: str) -> Engine:
    return engine_module.get_engine(database_url)


@pytest.fixture
def pg_engine(pg_database_url: str) -> Engine:
    return engine_module.get_engine(pg_database_url)


@pytest.fixture(autouse=True)
def scripted_strategy_is_registered(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine tests' scripted strategy is registered like a real one, for each engine test only, so that bots
    trading it pass the same validation as any other bot. (Here rather than in tests/engine/conftest.py: the deploy
    tests import their own ``conftest`` by name, and two conftest modules would collide.)"""
    if request.path.parent.name != "engine":
        return
    from engine_testing import ScriptedStrategy

    from chalicelib.trading import strategies

    monkeypatch.setitem(strategies._REGISTRY, "scripted", ScriptedStrategy)


#: Modules whose every test is slow (a throwaway PostgreSQL cluster, a real browser, hundreds of generated
#: requests, races with dozens of threads, whole replays, packaging). Marked here, in one place, so that
#: `pytest -m "not slow"` is the quick loop (README "Promises → tests"); single slow tests elsewhere carry
#: @pytest.mark.slow themselves.
SLOW_MODULES = frozenset({
    "tests/api/test_api_outages.py",
    "tests/api/test_api_schemathesis.py",
    "tests/api/test_api_snapshot_reads_pg.py",
    "tests/api/test_api_concurrency_pg.py",
    "tests/browser/test_dashboard_browser.py",
    "tests/bench/test_query_plans.py",
    "tests/deploy/test_aws_end_to_end.py",
    "tests/deploy/test_db_restarts.py",
    "tests/foundation/test_packaging.py",
    "tests/sim/test_simulator.py",
    # whole CLI runs in subprocesses, replays of hundreds of candles, hypothesis and thread races
    "tests/engine/test_one_account.py",
    "tests/engine/test_cli_live.py",
    "tests/engine/test_replay_equivalence.py",
    "tests/foundation/test_cli_errors.py",
    "tests/foundation/test_ledger_properties.py",
    "tests/foundation/test_concurrency.py",
    "tests/foundation/test_cli.py",
    "tests/foundation/test_cli_bots.py",
    # every money column of every row kind tampered with, on both databases (≈ 100 s of the quick loop)
    "tests/engine/test_verify_tampering.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        if Path(str(item.path)).relative_to(root).as_posix() in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
