"""The unit of work: the one way a use case frames a transaction. Repositories and services never commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from chalicelib.db.engine import WRITE_OPTION, get_engine


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
    """A read-only transaction, always rolled back; loaded objects stay readable after it ends."""
    session = Session(engine or get_engine(), expire_on_commit=False)
    try:
        session.begin()
        yield session
    finally:
        session.close()  # rolls back without expiring what was loaded
