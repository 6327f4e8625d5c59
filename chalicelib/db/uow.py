"""The unit of work: the one way a use case frames a transaction. Repositories and services never commit."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from chalicelib.db.engine import READ_OPTION, WRITE_OPTION, get_engine


@functools.lru_cache(maxsize=32)
def _marked(engine: Engine, option: str) -> Engine:
    """``engine`` with the execution option ``option`` set, made once per engine: ``execution_options`` builds a
    new option engine on every call (≈ 30 µs). An option engine shares its engine's pool, so one made before a
    ``dispose()`` uses the new pool after it."""
    return engine.execution_options(**{option: True})


def _begun(bind: Engine) -> Session:
    """A session whose transaction has begun (BEGIN sent). A pooled connection found dead at that BEGIN — the
    server restarted, failed over or closed it while idle — is replaced and the BEGIN sent once more: nothing of
    the transaction had run, so this retry is always safe, and no pre-ping round trip is paid on every
    transaction to find out."""
    for attempt in (1, 2):
        session = Session(bind, expire_on_commit=False)
        try:
            session.begin()
            session.connection()  # checks a connection out and sends BEGIN
            return session
        except DBAPIError as exc:
            session.close()
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def write_transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A transaction that will change data: committed on success, rolled back on any exception.

    On SQLite it starts with ``BEGIN IMMEDIATE`` (the write lock is taken before anything is read); on Postgres
    writers take the session row lock (``SELECT … FOR UPDATE``) through the ledger before reading money.
    """
    session = _begun(_marked(engine or get_engine(), WRITE_OPTION))
    with session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


@contextmanager
def read_transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A read-only transaction that sees one moment, always rolled back; loaded objects stay readable after it.

    PostgreSQL: ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`` — every statement of a response, report or
    verify reads the same snapshot, however busy the writers are. SQLite: a ``BEGIN`` transaction already reads
    one snapshot (WAL).
    """
    session = _begun(_marked(engine or get_engine(), READ_OPTION))
    try:
        yield session
    finally:
        session.close()  # rolls back without expiring what was loaded
