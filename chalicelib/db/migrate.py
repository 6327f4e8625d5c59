"""Schema migrations as a service: upgrade to head, report current vs head. Alembic does the work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from chalicelib.db.engine import get_engine


def migrations_dir() -> Path:
    """Top-level ``migrations/`` of the project (also at the root of the Lambda bundle, via ``vendor/``)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "migrations", Path.cwd() / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("cannot find the migrations/ directory")


def alembic_config(engine: Engine | None = None) -> Any:
    from alembic.config import Config

    directory = migrations_dir()
    config = Config(str(directory / "alembic.ini"))
    config.set_main_option("script_location", str(directory))
    if engine is not None:
        config.attributes["url"] = engine.url.render_as_string(hide_password=False)
    return config


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def head_revision() -> str:
    """The newest revision the code knows (no database needed)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_status(engine: Engine | None = None) -> SchemaStatus:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    engine = engine or get_engine()
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = script.get_current_head()
    assert head is not None
    return SchemaStatus(current=current, head=head)


def upgrade(engine: Engine | None = None, revision: str = "head") -> SchemaStatus:
    """Bring the schema to ``revision`` (head by default) in one transaction."""
    from alembic import command

    return _run(engine or get_engine(), lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> SchemaStatus:
    from alembic import command

    return _run(engine, lambda config: command.downgrade(config, revision))


def _run(engine: Engine, action: Callable[[Any], None]) -> SchemaStatus:
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to alter it ("batch mode"); foreign keys must be off while it does
            # (the pragma cannot change inside a transaction) and are checked once it is done.
            _sqlite_pragma(conn, "PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":  # a backfill may rightly take longer than a request
                    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
                config = alembic_config(engine)
                config.attributes["connection"] = conn
                action(config)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                _sqlite_pragma(conn, "PRAGMA foreign_keys=ON")
    return schema_status(engine)


def _sqlite_pragma(conn: Any, statement: str) -> None:
    """Run a pragma outside any transaction (SQLAlchemy would wrap exec_driver_sql in one)."""
    raw = conn.connection.dbapi_connection
    raw.execute(statement)


def run_migrate_function() -> dict[str, str | None]:
    """The migrate Lambda: bring the schema to head (idempotent) and log what changed. A bad setting is logged as
    its one line and fails the invocation (``chalice invoke`` exits non-zero)."""
    from aws_lambda_powertools import Logger

    from chalicelib import logs
    from chalicelib.settings import ConfigurationError

    logger = Logger(service=logs.SERVICE, child=True)
    try:
        before = schema_status().current
        after = upgrade()
    except ConfigurationError as exc:
        logger.error(f"Migration refused, the configuration is invalid: {exc}")
        raise
    logger.info(f"Schema at {after.current} (was {before or 'empty'}; head {after.head})")
    return {"before": before, "after": after.current, "head": after.head}
