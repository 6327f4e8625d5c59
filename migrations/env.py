"""Alembic environment: runs against the connection the caller hands over, or the configured database."""

from __future__ import annotations

from alembic import context

from chalicelib.db.engine import get_engine
from chalicelib.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or None
    with get_engine(url).connect() as conn:
        _run(conn)
        conn.commit()
