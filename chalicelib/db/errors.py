"""What a database failure means for the caller, decided in one place for the API and the CLI.

A driver or pool exception is either

- ``busy``: contention that a retry fixes (lock wait or statement timed out, pool checkout timed out, a
  serialization failure or deadlock, SQLite's "database is locked"); nothing was applied;
- ``unavailable``: the server cannot be reached or is restarting (connection refused or lost, admin shutdown,
  "the database system is starting up", too many connections);
- ``configuration``: the URL or credentials are wrong (unknown database or role, bad password, a SQLite file
  that cannot be opened) — no retry helps, the operator must fix the setting;
- ``schema``: the database has not been migrated (no such table);

or none of these (``describe`` returns None: a bug, reported as such). Messages are one line, say what to do,
and never contain a password or the SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProblemKind = Literal["busy", "unavailable", "configuration", "schema"]

#: Seconds a client should wait before retrying, per kind (the ``Retry-After`` header).
RETRY_AFTER = {"busy": 1, "unavailable": 5, "configuration": 30, "schema": 30}

_BUSY_STATES = {"55P03", "57014", "40001", "40P01"}  # lock_not_available, query_canceled, serialization, deadlock
_UNAVAILABLE_PREFIXES = ("08", "53", "57P")  # connection exceptions, insufficient resources, operator intervention
_CONFIGURATION_STATES = {"3D000": "the database does not exist", "28000": "the role is not allowed to connect",
                         "28P01": "the password was refused", "42501": "the role lacks a privilege it needs"}
_SCHEMA_STATES = {"42P01", "42703"}  # undefined table, undefined column
MIGRATE_HINT = "the database schema is not up to date: run `atb db migrate`"


@dataclass(frozen=True)
class DatabaseProblem:
    kind: ProblemKind
    message: str

    @property
    def retry_after(self) -> int:
        return RETRY_AFTER[self.kind]


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        orig = getattr(current, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's exception
        if isinstance(orig, BaseException) and orig not in seen:
            seen.append(orig)
        current = current.__cause__ or current.__context__
    return seen


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error, as the driver reports it (``chalicelib.db.driver``: the driver's one home)."""
    from chalicelib.db import driver

    return driver.sqlstate(exc)


def describe(exc: BaseException) -> DatabaseProblem | None:
    """What ``exc`` (or an exception it was raised from) means for the caller; None when it is not one of ours."""
    import sqlalchemy.exc as sa

    chain = _chain(exc)
    for err in chain:
        state = _sqlstate(err)
        if state is None:
            continue
        if state in _BUSY_STATES:
            return DatabaseProblem("busy", "the account is busy (a lock or statement timed out); nothing was "
                                           "changed: retry shortly")
        if state in _CONFIGURATION_STATES:
            return DatabaseProblem("configuration", f"cannot use the database: {_CONFIGURATION_STATES[state]}; "
                                                    "check DATABASE_URL (or the database secret)")
        if state in _SCHEMA_STATES:
            return DatabaseProblem("schema", MIGRATE_HINT)
        if state.startswith(_UNAVAILABLE_PREFIXES):
            return DatabaseProblem("unavailable", "the database is unavailable (restarting or overloaded); "
                                                  "retry shortly")
        return None  # another server error: a bug of ours, not the caller's
    for err in chain:
        text = str(err).lower()
        if isinstance(err, sa.TimeoutError):  # QueuePool checkout timed out
            return DatabaseProblem("busy", "every database connection is in use; nothing was changed: retry "
                                           "shortly")
        if "database is locked" in text or "database table is locked" in text:
            return DatabaseProblem("busy", "the database is busy (locked by another writer); nothing was "
                                           "changed: retry shortly")
        if "no such table" in text or "no such column" in text:
            return DatabaseProblem("schema", MIGRATE_HINT)
        if "unable to open database file" in text or "readonly database" in text:
            return DatabaseProblem("configuration", "cannot open the SQLite database file: check that its "
                                                    "directory exists and is writable (DATABASE_URL)")
    for err in chain:
        if _is_connection_failure(err):
            return DatabaseProblem("unavailable", "cannot reach the database server; check that it is running "
                                                  "and DATABASE_URL's host and port, then retry")
    return None


def _is_connection_failure(err: BaseException) -> bool:
    import socket

    import sqlalchemy.exc as sa

    if isinstance(err, (ConnectionError, TimeoutError, socket.gaierror)):  # refused, reset, timed out, no such host
        return True
    if isinstance(err, sa.DBAPIError) and err.connection_invalidated:
        return True
    from chalicelib.db import driver

    return driver.is_connection_error(err)
