"""The PostgreSQL driver choice: pg8000 through SQLAlchemy, sending each statement in one round trip.

pg8000 sends a parameterised statement through the extended protocol as Parse+Sync, Describe+Sync,
Bind+Execute+Sync (three waits for the server), and COMMIT the same way. A statement prepared once per connection
executes as Bind+Execute+Sync: one wait. This dialect uses only pg8000's public API to get there:

* ``Connection.prepare()`` / ``PreparedStatement.run()``: every parameterised statement is prepared the first time
  a pooled connection sends it and reused after that (cached by SQL text, at most :data:`MAX_PREPARED` per
  connection, least recently used closed first). A reconnect is a new connection with an empty cache, so nothing
  is ever sent to a server that has not seen it.
* ``Connection.autocommit = True``: pg8000 then never sends a BEGIN of its own; the engine's ``begin`` listener
  (``chalicelib.db.engine``) sends ``BEGIN`` — for a read, ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`` —
  and COMMIT and ROLLBACK go as one simple query each (one round trip).
* Statements without parameters (BEGIN, COMMIT, ROLLBACK, DDL) go through a plain cursor: one simple query.

SQLAlchemy compiles with the ``named`` paramstyle (``:name``), the style pg8000's prepared statements take.
UPDATE and DELETE statements without RETURNING keep pg8000's plain cursor, because SQLAlchemy checks their row
count and a prepared statement's result does not carry it; the money paths write with RETURNING.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from datetime import datetime
from typing import Any

import pg8000
from pg8000.converters import timestamptz_in
from sqlalchemy.dialects.postgresql.pg8000 import PGDialect_pg8000, PGExecutionContext_pg8000

#: How many prepared statements one connection keeps (each is a few kB in the server's session).
MAX_PREPARED = 256

#: The placeholders pg8000's prepared statements take (the engine passes it: pg8000's module default wins otherwise).
PARAMSTYLE = "named"

#: The name the engine registers this dialect under (``postgresql+<NAME>``); users still write ``pg8000``.
NAME = "atb_pg8000"


class PreparedStatements:
    """One connection's prepared statements, by SQL text, least recently used first."""

    def __init__(self, connection: Any, limit: int = MAX_PREPARED) -> None:
        self.connection = connection
        self.limit = limit
        self.by_sql: OrderedDict[str, Any] = OrderedDict()
        self.prepared = 0  # how many were prepared over the connection's life (tests, bench)

    def get(self, sql: str) -> Any:
        statement = self.by_sql.get(sql)
        if statement is not None:
            self.by_sql.move_to_end(sql)
            return statement
        while len(self.by_sql) >= self.limit:
            _, oldest = self.by_sql.popitem(last=False)
            oldest.close()
        statement = self.connection.prepare(sql)
        self.by_sql[sql] = statement
        self.prepared += 1
        return statement


_caches: weakref.WeakKeyDictionary[Any, PreparedStatements] = weakref.WeakKeyDictionary()


def statements_of(connection: Any) -> PreparedStatements:
    """The prepared statements of a pg8000 connection (made empty for a new connection)."""
    cache = _caches.get(connection)
    if cache is None:
        cache = _caches[connection] = PreparedStatements(connection)
    return cache


def _classified(error: pg8000.DatabaseError) -> pg8000.Error:
    """The exception class pg8000's own cursor raises for a server error (a unique violation is an
    IntegrityError), so SQLAlchemy wraps a prepared statement's error as it wraps the cursor's."""
    message = error.args[0] if error.args else None
    code = message.get("C") if isinstance(message, dict) else None
    if code == "28000":
        return pg8000.InterfaceError(message)
    if code == "23505":
        return pg8000.IntegrityError(message)
    return pg8000.ProgrammingError(message)


class PreparedCursor:
    """A DB-API cursor over one connection: parameterised statements run prepared, the rest as simple queries."""

    arraysize = 1

    def __init__(self, connection: Any, *, prepare: bool) -> None:
        self._plain = connection.cursor()
        self._plain.paramstyle = "named"
        self._statements = statements_of(connection) if prepare else None
        self._rows: list[Any] | None = None
        self._description: list[tuple[Any, ...]] | None = None

    # --- DB-API ------------------------------------------------------------------------------------------------
    def execute(self, operation: str, parameters: Any = None) -> PreparedCursor:
        if self._statements is None or not parameters:
            self._rows = None
            self._plain.execute(operation, parameters or ())
            return self
        statement = self._statements.get(operation)
        try:
            rows = statement.run(**parameters)
        except pg8000.DatabaseError as exc:
            if type(exc) is not pg8000.DatabaseError:
                raise
            raise _classified(exc) from exc
        columns = statement.row_desc
        self._description = ([(c["name"], c["type_oid"], None, None, None, None, None) for c in columns]
                             if columns else None)
        self._rows = list(rows)
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> PreparedCursor:
        if self._statements is None:
            self._rows = None
            self._plain.executemany(operation, seq_of_parameters)  # the row count of them all
            return self
        for parameters in seq_of_parameters:
            self.execute(operation, parameters)
        return self

    @property
    def description(self) -> Any:
        return self._plain.description if self._rows is None else self._description

    @property
    def rowcount(self) -> int:
        return int(self._plain.rowcount) if self._rows is None else len(self._rows)

    def fetchone(self) -> Any:
        if self._rows is None:
            return self._plain.fetchone()
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        if self._rows is None:
            return list(self._plain.fetchmany(size))
        size = self.arraysize if size is None else size
        out, self._rows = self._rows[:size], self._rows[size:]
        return out

    def fetchall(self) -> list[Any]:
        if self._rows is None:
            return list(self._plain.fetchall())
        out, self._rows = self._rows, []
        return out

    def close(self) -> None:
        self._plain.close()

    def setinputsizes(self, *sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass


class _ExecutionContext(PGExecutionContext_pg8000):
    def create_server_side_cursor(self) -> Any:
        cursor = super().create_server_side_cursor()  # type: ignore[no-untyped-call]  # DECLARE … CURSOR via pg8000
        cursor.cursor.paramstyle = PARAMSTYLE
        return cursor

    def create_default_cursor(self) -> Any:
        # UPDATE/DELETE without RETURNING: SQLAlchemy checks the row count, which only the plain cursor knows.
        needs_rowcount = (self.isupdate or self.isdelete) and not getattr(self.compiled, "effective_returning", None)
        return PreparedCursor(self.root_connection.connection.dbapi_connection, prepare=not needs_rowcount)


class Dialect(PGDialect_pg8000):
    """pg8000 with prepared statements, driver autocommit, and BEGIN/COMMIT/ROLLBACK as one simple query each."""

    supports_statement_cache = True
    default_paramstyle = PARAMSTYLE
    execution_ctx_cls = _ExecutionContext

    def on_connect(self) -> Any:
        inherited = super().on_connect()  # type: ignore[no-untyped-call]

        def connected(dbapi_connection: Any) -> None:
            if inherited is not None:
                inherited(dbapi_connection)
            dbapi_connection.autocommit = True  # BEGIN is ours (engine's begin listener), not the driver's
            dbapi_connection.register_in_adapter(TIMESTAMPTZ_OID, read_timestamptz)

        return connected

    def do_begin(self, dbapi_connection: Any) -> None:
        """Nothing here: the engine's ``begin`` listener sends BEGIN with the transaction's isolation."""

    def do_commit(self, dbapi_connection: Any) -> None:
        _send_ending(dbapi_connection, "COMMIT")

    def do_rollback(self, dbapi_connection: Any) -> None:
        # Only a connection whose BEGIN we sent has anything to roll back: the pool's reset of a connection that
        # just committed costs no round trip.
        _send_ending(dbapi_connection, "ROLLBACK")


#: PostgreSQL's type oid of ``timestamp with time zone`` (every timestamp column of this schema).
TIMESTAMPTZ_OID = 1184


def read_timestamptz(text: str) -> Any:
    """A ``timestamptz`` the server sent as text (``2026-11-30 01:36:20.131458+00``), through pg8000's public
    ``register_in_adapter``: ``datetime.fromisoformat`` reads the server's ISO output in ≈ 0.1 µs where pg8000's
    ``strptime`` takes ≈ 11 µs — a money path reads 5 to 20 of them. What it cannot read (``infinity``, BC dates,
    years past 9999) goes to pg8000's own reader, which answers exactly as before."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return timestamptz_in(text)


#: The connections with a transaction open: BEGIN sent (:func:`began`), no COMMIT or ROLLBACK yet.
_in_transaction: weakref.WeakSet[Any] = weakref.WeakSet()


def began(dbapi_connection: Any) -> None:
    """Note that BEGIN is being sent on this connection (the engine's ``begin`` listener)."""
    _in_transaction.add(getattr(dbapi_connection, "dbapi_connection", dbapi_connection))


def _send_ending(dbapi_connection: Any, word: str) -> None:
    raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)  # the pool passes its proxy
    if raw not in _in_transaction:
        return
    _in_transaction.discard(raw)
    cursor = raw.cursor()
    cursor.execute(word)
    cursor.close()


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a pg8000 server error (its first argument is the server's field dict); None otherwise."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], dict):
        code = args[0].get("C")
        return str(code) if code else None
    return None


def is_connection_error(exc: BaseException) -> bool:
    """pg8000's word for a connection that failed or was lost (``InterfaceError``)."""
    return isinstance(exc, pg8000.InterfaceError)


def url_for(parsed: Any) -> Any:
    """The URL SQLAlchemy is given: the user's ``postgresql+pg8000://`` URL, driven by this dialect."""
    from sqlalchemy.dialects import registry

    registry.register(f"postgresql.{NAME}", __name__, "Dialect")
    return parsed.set(drivername=f"postgresql+{NAME}")
