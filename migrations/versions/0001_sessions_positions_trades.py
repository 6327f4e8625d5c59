"""Sessions, positions, trades and the tick log: the schema before balances had a ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chalicelib.db.types import Money, Quantity, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def num(column: str) -> str:
    return f"CAST({column} AS NUMERIC)"


def upgrade() -> None:
    op.create_table(
        "trading_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("initial_balance", Money(), nullable=False),
        sa.Column("base_currency", sa.String(8), server_default="USD", nullable=False),
        sa.Column("candle_cursor", UTCDateTime(), nullable=True),
        sa.Column("last_tick_at", UTCDateTime(), nullable=True),
        sa.Column("resumed_from_id", sa.Integer(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["resumed_from_id"], ["trading_sessions.id"],
                                name="fk_trading_sessions_resumed_from_id_trading_sessions"),
        sa.CheckConstraint("mode IN ('paper', 'live')", name=op.f("ck_trading_sessions_mode")),
        sa.CheckConstraint("status IN ('active', 'ended')", name=op.f("ck_trading_sessions_status")),
        sa.CheckConstraint(f"{num('initial_balance')} >= 0",
                           name=op.f("ck_trading_sessions_initial_balance_not_negative")),
        sa.PrimaryKeyConstraint("id", name="pk_trading_sessions"),
    )
    op.create_index(
        "uq_trading_sessions_one_active",
        "trading_sessions",
        ["strategy", "symbol", "timeframe", "mode"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "positions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("entry_price", Money(), nullable=False),
        sa.Column("quantity", Quantity(), nullable=False),
        sa.Column("cost", Money(), nullable=False),
        sa.Column("stop_loss", Money(), nullable=True),
        sa.Column("take_profit", Money(), nullable=True),
        sa.Column("entry_time", UTCDateTime(), nullable=False),
        sa.Column("exit_price", Money(), nullable=True),
        sa.Column("exit_time", UTCDateTime(), nullable=True),
        sa.Column("exit_reason", sa.String(32), nullable=True),
        sa.Column("realized_pnl", Money(), nullable=True),
        sa.Column("fees", Money(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["trading_sessions.id"],
                                name="fk_positions_session_id_trading_sessions"),
        sa.CheckConstraint("side IN ('long', 'short')", name=op.f("ck_positions_side")),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_positions_status")),
        sa.CheckConstraint(f"{num('entry_price')} > 0", name=op.f("ck_positions_entry_price_positive")),
        sa.CheckConstraint(f"{num('quantity')} > 0", name=op.f("ck_positions_quantity_positive")),
        sa.CheckConstraint(f"{num('cost')} > 0", name=op.f("ck_positions_cost_positive")),
        sa.CheckConstraint(f"exit_price IS NULL OR {num('exit_price')} > 0",
                           name=op.f("ck_positions_exit_price_positive")),
        sa.CheckConstraint(f"{num('fees')} >= 0", name=op.f("ck_positions_fees_not_negative")),
        sa.PrimaryKeyConstraint("id", name="pk_positions"),
    )
    op.create_index("ix_positions_session_id_status", "positions", ["session_id", "status"])
    op.create_table(
        "trades",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("position_id", sa.Integer(), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("entry_price", Money(), nullable=False),
        sa.Column("exit_price", Money(), nullable=False),
        sa.Column("quantity", Quantity(), nullable=False),
        sa.Column("entry_time", UTCDateTime(), nullable=False),
        sa.Column("exit_time", UTCDateTime(), nullable=False),
        sa.Column("realized_pnl", Money(), nullable=False),
        sa.Column("fees", Money(), nullable=False),
        sa.Column("exit_reason", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["trading_sessions.id"],
                                name="fk_trades_session_id_trading_sessions"),
        sa.ForeignKeyConstraint(["position_id"], ["positions.id"], name="fk_trades_position_id_positions"),
        sa.CheckConstraint("side IN ('long', 'short')", name=op.f("ck_trades_side")),
        sa.CheckConstraint(f"{num('entry_price')} > 0", name=op.f("ck_trades_entry_price_positive")),
        sa.CheckConstraint(f"{num('exit_price')} > 0", name=op.f("ck_trades_exit_price_positive")),
        sa.CheckConstraint(f"{num('quantity')} > 0", name=op.f("ck_trades_quantity_positive")),
        sa.CheckConstraint(f"{num('fees')} >= 0", name=op.f("ck_trades_fees_not_negative")),
        sa.UniqueConstraint("position_id", name="uq_trades_position_id"),
        sa.PrimaryKeyConstraint("id", name="pk_trades"),
    )
    op.create_index("ix_trades_session_id_id", "trades", ["session_id", "id"])
    op.create_table(
        "tick_log",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("candle_time", UTCDateTime(), nullable=False),
        sa.Column("close_price", Money(), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("processed_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["trading_sessions.id"],
                                name="fk_tick_log_session_id_trading_sessions"),
        sa.UniqueConstraint("session_id", "candle_time", name="uq_tick_log_session_id_candle_time"),
        sa.PrimaryKeyConstraint("id", name="pk_tick_log"),
    )


def downgrade() -> None:
    op.drop_table("tick_log")
    op.drop_index("ix_trades_session_id_id", table_name="trades")
    op.drop_table("trades")
    op.drop_index("ix_positions_session_id_status", table_name="positions")
    op.drop_table("positions")
    op.drop_index("uq_trading_sessions_one_active", table_name="trading_sessions")
    op.drop_table("trading_sessions")
