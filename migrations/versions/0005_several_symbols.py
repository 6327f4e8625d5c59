"""One wallet, several pairs (issue 13).

* ``trading_sessions.symbol`` and ``bots.symbol`` hold a bot's symbols, comma-joined in the bot's fixed order
  (``BTCUSDT,ETHUSDT``; one symbol stays ``BTCUSDT``), so they grow to 200 characters;
* ``trading_sessions.marks`` replaces ``mark_price``: per symbol, the close of its newest applied candle (what its
  positions are marked at) and that candle's open time (the symbol's own cursor), as exact decimal text in JSON.
  ``candle_cursor`` stays the newest candle applied over all symbols; ``pairs_from`` is the cursor of a pair with no
  candle applied yet (where the account began), so a pair late or failing at the start catches up from there;
* ``tick_log`` gets the candle's ``symbol`` (a candle is processed once per session *and symbol*) and the gross
  ``exposure`` after it (open positions marked at the marks: the exposure chart);
* ``positions`` and ``trades`` record the ``strategy`` (and ``strategy_version``) that opened them, so attribution
  survives strategy switches.

Existing rows are backfilled: a session's one symbol, its mark and cursor, its current strategy.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from chalicelib.db.types import Money, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trading_sessions") as batch:
        batch.alter_column("symbol", type_=sa.String(200), existing_type=sa.String(32), existing_nullable=False)
        batch.add_column(sa.Column("marks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("pairs_from", UTCDateTime(), nullable=True))
    with op.batch_alter_table("bots") as batch:
        batch.alter_column("symbol", type_=sa.String(200), existing_type=sa.String(32), existing_nullable=False)
    with op.batch_alter_table("tick_log") as batch:
        batch.add_column(sa.Column("symbol", sa.String(32), nullable=True))
        batch.add_column(sa.Column("exposure", Money(), nullable=True))
    for table in ("positions", "trades"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("strategy", sa.String(64), nullable=True))
            batch.add_column(sa.Column("strategy_version", sa.String(64), nullable=True))

    conn = op.get_bind()
    sessions = conn.execute(sa.text(
        "SELECT id, symbol, strategy, mark_price, candle_cursor FROM trading_sessions")).all()
    for sid, symbol, strategy, mark, cursor in sessions:
        marks = {}
        if cursor is not None:
            cursor_text = cursor if isinstance(cursor, str) else cursor.isoformat()
            marks[symbol] = {"close": None if mark is None else format(mark, "f") if not isinstance(mark, str)
                             else mark, "cursor": cursor_text}
        conn.execute(sa.text("UPDATE trading_sessions SET marks = :m, pairs_from = candle_cursor WHERE id = :id"),
                     {"m": json.dumps(marks), "id": sid})
        conn.execute(sa.text("UPDATE tick_log SET symbol = :s WHERE session_id = :id"), {"s": symbol, "id": sid})
        for table in ("positions", "trades"):
            conn.execute(sa.text(f"UPDATE {table} SET strategy = :st WHERE session_id = :id"),  # noqa: S608
                         {"st": strategy, "id": sid})

    with op.batch_alter_table("tick_log") as batch:
        batch.alter_column("symbol", existing_type=sa.String(32), nullable=False)
        batch.drop_constraint("uq_tick_log_session_id_candle_time", type_="unique")
        batch.create_unique_constraint("uq_tick_log_session_id_symbol_candle_time",
                                       ["session_id", "symbol", "candle_time"])
    with op.batch_alter_table("trading_sessions") as batch:
        batch.alter_column("marks", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("mark_price")


def downgrade() -> None:
    with op.batch_alter_table("trading_sessions") as batch:
        batch.add_column(sa.Column("mark_price", Money(), nullable=True))
    conn = op.get_bind()
    for sid, marks in conn.execute(sa.text("SELECT id, marks FROM trading_sessions")).all():
        data = marks if isinstance(marks, dict) else json.loads(marks or "{}")
        closes = [m.get("close") for m in data.values() if m.get("close") is not None]
        conn.execute(sa.text("UPDATE trading_sessions SET mark_price = :p WHERE id = :id"),
                     {"p": closes[0] if len(closes) == 1 else None, "id": sid})
    with op.batch_alter_table("trading_sessions") as batch:
        batch.drop_column("pairs_from")
        batch.drop_column("marks")
        batch.alter_column("symbol", type_=sa.String(32), existing_type=sa.String(200), existing_nullable=False)
    with op.batch_alter_table("bots") as batch:
        batch.alter_column("symbol", type_=sa.String(32), existing_type=sa.String(200), existing_nullable=False)
    with op.batch_alter_table("tick_log") as batch:
        batch.drop_constraint("uq_tick_log_session_id_symbol_candle_time", type_="unique")
        batch.create_unique_constraint("uq_tick_log_session_id_candle_time", ["session_id", "candle_time"])
        batch.drop_column("exposure")
        batch.drop_column("symbol")
    for table in ("positions", "trades"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("strategy_version")
            batch.drop_column("strategy")
