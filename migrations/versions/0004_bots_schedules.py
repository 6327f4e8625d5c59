"""Bots kept in the database and scheduled deposits (issue 14).

* ``bots``: one row per bot (strategy, symbol, timeframe, exchange, mode, initial capital, active/paused), unique
  on the bot's identity (symbol, timeframe, exchange, mode); ``session_id`` is its account once opened.
* ``bot_seeds``: the ``ATB_BOTS`` entries already seeded (a removed bot is not re-created by the next tick).
* ``deposit_schedules``: a deposit repeated every period into one account, attributed to its creator.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chalicelib.db.types import Money, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _num(column: str) -> str:
    return f"CAST({column} AS NUMERIC)"


def upgrade() -> None:
    op.create_table(
        "bots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("initial_capital", Money(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'paused')", name=op.f("ck_bots_status")),
        sa.CheckConstraint(f"{_num('initial_capital')} > 0", name=op.f("ck_bots_initial_capital_positive")),
        sa.UniqueConstraint("symbol", "timeframe", "exchange", "mode",
                            name=op.f("uq_bots_symbol_timeframe_exchange_mode")),
        sa.ForeignKeyConstraint(["session_id"], ["trading_sessions.id"], name="fk_bots_session_id_trading_sessions"),
        sa.PrimaryKeyConstraint("id", name="pk_bots"),
    )
    op.create_table(
        "bot_seeds",
        sa.Column("entry", sa.String(200), nullable=False),
        sa.Column("seeded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("entry", name="pk_bot_seeds"),
    )
    op.create_table(
        "deposit_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("every", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("next_period", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'paused')", name=op.f("ck_deposit_schedules_status")),
        sa.CheckConstraint(f"{_num('amount')} > 0", name=op.f("ck_deposit_schedules_amount_positive")),
        sa.ForeignKeyConstraint(["session_id"], ["trading_sessions.id"],
                                name="fk_deposit_schedules_session_id_trading_sessions"),
        sa.PrimaryKeyConstraint("id", name="pk_deposit_schedules"),
    )


def downgrade() -> None:
    op.drop_table("deposit_schedules")
    op.drop_table("bot_seeds")
    op.drop_table("bots")
