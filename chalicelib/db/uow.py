"""The unit of work: the one way a use case frames a transaction. Repositories and services never commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from chalicelib.db.engine import WRITE_OPTION, get_engine

_SNAPSHOT = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


@contextmanager
def write_transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A transaction that will change data: committed on success, rolled back on any exception.

    On SQLite it starts with ``BEGIN IMMEDIATE`` (the write lock is taken before anything is read); on Postgres
    writers take the session row lock (``SELECT … FOR UPDATE``) through the ledger before reading money.
    """
    bind = (engine or get_engine()).execution_options(**{WRITE_OPTION: True})
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def read_transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A read-only transaction that sees one moment, always rolled back; loaded objects stay readable after it.

    PostgreSQL: ``REPEATABLE READ, READ ONLY`` — every statement of a response, report or verify reads the same
    snapshot, however busy the writers are. SQLite: a ``BEGIN`` transaction already reads one snapshot (WAL).
    """
    bind = engine or get_engine()
    session = Session(bind, expire_on_commit=False)
    try:
        session.begin()
        if bind.dialect.name == "postgresql":
            # The transaction's first statement (one round trip; nothing to reset when the connection returns).
            session.execute(_SNAPSHOT)
        yield session
    finally:
        session.close()  # rolls back without expiring what was loaded
