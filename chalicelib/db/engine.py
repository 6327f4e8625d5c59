"""One engine per database URL per process, made on first use and reused while a Lambda stays warm.

No connection is opened at import time. A pooled Postgres connection that turns out dead at its transaction's
BEGIN (a database restart, an RDS failover, a session the server closed while idle: Aurora's
``idle_session_timeout``) is replaced and the transaction begun again (``chalicelib.db.uow``), so it costs one
reconnect, not an error, and no pre-ping round trip on every transaction. Statements go through
``chalicelib.db.driver`` (prepared once per connection). SQLite gets the settings an embedded
database needs to behave: foreign keys on, WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so
that two writers serialise instead of failing half-way.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from chalicelib import settings
from chalicelib.db import driver

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

#: Execution option that marks a transaction as a writer (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "atb_write"


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database)."""
    url = url or settings.database_url()
    engine = _engines.get(url)
    if engine is None:
        with _lock:
            engine = _engines.get(url)
            if engine is None:
                check_url(url)
                engine = _create(url)
                _engines[url] = engine
    return engine


def check_url(url: str) -> None:
    """Refuse a URL this bot cannot use, with one line that says how to write it (never echoing a password).

    Only two kinds work: ``postgresql+pg8000://user:pass@host:5432/db`` and ``sqlite:///path``. SQLAlchemy would
    otherwise fail later with "Can't load plugin" or a missing psycopg2 module.
    """
    from sqlalchemy.exc import ArgumentError

    fix = "write it as postgresql+pg8000://USER:PASSWORD@HOST:5432/DATABASE or sqlite:///PATH"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise settings.ConfigurationError(f"DATABASE_URL is not a database URL: {fix}") from None
    backend, _, driver = parsed.drivername.partition("+")  # not get_driver_name(): it imports the dialect
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername in ("postgres", "postgresql") or parsed.drivername.startswith("postgres+"):
        raise settings.ConfigurationError(f"DATABASE_URL {shown} names no driver this bot ships: write it as "
                                          "postgresql+pg8000://USER:PASSWORD@HOST:5432/DATABASE")
    if backend == "postgresql" and driver != "pg8000":
        raise settings.ConfigurationError(f"DATABASE_URL {shown} uses the driver {driver!r}; this bot ships "
                                          "pg8000 only: use postgresql+pg8000://")
    if backend != "postgresql" and not (backend == "sqlite" and driver in ("", "pysqlite")):
        raise settings.ConfigurationError(f"DATABASE_URL {shown}: unsupported database {parsed.drivername!r}; "
                                          f"{fix}")


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet (connecting would create it), else None."""
    parsed = make_url(url)
    if parsed.drivername != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return None if os.path.exists(parsed.database) else parsed.database


def dispose_engines() -> None:
    """Close every pooled connection (tests, and after a fork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _create(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            # A writer waits for SQLite's write lock as long as a Postgres writer waits for the account lock.
            connect_args={"check_same_thread": False, "timeout": lock_timeout_ms() / 1000},
            pool_pre_ping=False,
        )
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["timeout"] = connect_timeout()
        # Sent in the startup packet (no extra round trip): a writer waits at most lock_timeout for the account
        # lock and any statement at most statement_timeout, then fails with a "busy, retry" the API turns into 503.
        connect_args["startup_params"] = {"lock_timeout": str(lock_timeout_ms()),
                                          "statement_timeout": str(statement_timeout_ms())}
        ssl_context = _ssl_context(settings.database_sslmode())
        if ssl_context is not None:
            connect_args["ssl_context"] = ssl_context
    engine = create_engine(
        driver.url_for(parsed),
        paramstyle=driver.PARAMSTYLE,
        connect_args=connect_args,
        # No pre-ping (a round trip per transaction): a connection found dead at its BEGIN is replaced and the
        # transaction started once more (``chalicelib.db.uow``); nothing of it had been sent.
        pool_pre_ping=False,
        pool_use_lifo=True,  # the most recently used connection first: its prepared statements are warm
        pool_size=5,
        max_overflow=20,
        pool_recycle=300,
        pool_timeout=pool_timeout(),  # all connections busy: give up (503) instead of queueing for 30 s
    )
    _configure_postgres(engine)
    return engine


#: Execution option that marks a read-only snapshot (PostgreSQL: REPEATABLE READ, READ ONLY).
READ_OPTION = "atb_read"


def _configure_postgres(engine: Engine) -> None:
    """BEGIN goes as one simple query; a read asks for its snapshot in the same statement."""

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        driver.began(conn.connection.dbapi_connection)
        if conn.get_execution_options().get(READ_OPTION):
            conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            conn.exec_driver_sql("BEGIN")


def connect_timeout() -> float:
    """Seconds to wait for a connection (``DATABASE_CONNECT_TIMEOUT``, default 30). An Aurora Serverless v2
    database that paused at 0 ACU takes about 15 s (up to ~30 s after a long pause) to accept the first one.
    pg8000 applies it to every socket read too, so it also bounds how long one statement may wait."""
    return settings.get().database_connect_timeout


def lock_timeout_ms() -> int:
    """PostgreSQL ``lock_timeout`` (``DATABASE_LOCK_TIMEOUT_MS``, default 5000): how long a writer waits for the
    account row lock before it gives up with "busy, retry" (nothing applied)."""
    return settings.get().database_lock_timeout_ms


def statement_timeout_ms() -> int:
    """PostgreSQL ``statement_timeout`` (``DATABASE_STATEMENT_TIMEOUT_MS``, default 20000): inside a Lambda's 30 s,
    so a runaway statement ends with an answer rather than with the invocation. Migrations lift it."""
    return settings.get().database_statement_timeout_ms


def pool_timeout() -> float:
    """Seconds to wait for a free pooled connection (``DATABASE_POOL_TIMEOUT``, default 3) before answering busy."""
    return settings.get().database_pool_timeout


def _ssl_context(mode: str) -> ssl.SSLContext | None:
    if mode == "disable":
        return None
    context = ssl.create_default_context(cafile=settings.database_ca_bundle())  # the RDS CA bundle, when set
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={lock_timeout_ms()}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
