"""The balance ledger: ``account_balances`` and the session's cached balance, recovered from trade history.

Every session that exists when this runs gets one ``recovered_from_trades`` ledger row with the balance its
history implies, computed exactly in Decimal:

    total    = initial balance + Σ realised P&L of closed trades − Σ their fees − Σ entry fees of open positions
    reserved = Σ cost of open positions
    available = total − reserved        (must not be negative: the migration stops and names the session)
    peak     = the highest running total along the trades in exit order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from chalicelib.db.types import Money, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KINDS = ("initial", "trade_pnl", "fee", "manual_set", "deposit", "withdrawal", "reset",
         "recovered_from_trades", "resumed")


def num(column: str) -> str:
    return f"CAST({column} AS NUMERIC)"


def upgrade() -> None:
    with op.batch_alter_table("trading_sessions") as batch:
        batch.add_column(sa.Column("total_balance", Money(), server_default="0", nullable=False))
        batch.add_column(sa.Column("available_balance", Money(), server_default="0", nullable=False))
        batch.add_column(sa.Column("reserved_balance", Money(), server_default="0", nullable=False))
        batch.add_column(sa.Column("peak_balance", Money(), server_default="0", nullable=False))
        batch.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))
        batch.create_check_constraint(op.f("ck_trading_sessions_available_not_negative"),
                                      sa.text(f"{num('available_balance')} >= 0"))
        batch.create_check_constraint(op.f("ck_trading_sessions_reserved_not_negative"),
                                      sa.text(f"{num('reserved_balance')} >= 0"))

    op.create_table(
        "account_balances",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("base_currency", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("delta", Money(), nullable=False),
        sa.Column("total_balance", Money(), nullable=False),
        sa.Column("available_balance", Money(), nullable=False),
        sa.Column("reserved_balance", Money(), nullable=False),
        sa.Column("asset_balances", sa.JSON(), nullable=False),
        sa.Column("reference", sa.String(128), nullable=True),
        sa.Column("last_updated", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.Column("updated_by_label", sa.String(100), nullable=True),
        sa.Column("update_reason", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["trading_sessions.id"],
                                name="fk_account_balances_session_id_trading_sessions"),
        sa.CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in KINDS) + ")",
                           name=op.f("ck_account_balances_kind")),
        sa.CheckConstraint(f"{num('available_balance')} >= 0",
                           name=op.f("ck_account_balances_available_not_negative")),
        sa.CheckConstraint(f"{num('reserved_balance')} >= 0",
                           name=op.f("ck_account_balances_reserved_not_negative")),
        sa.UniqueConstraint("session_id", "kind", "reference",
                            name="uq_account_balances_session_id_kind_reference"),
        sa.PrimaryKeyConstraint("id", name="pk_account_balances"),
    )
    op.create_index("ix_account_balances_session_id_id", "account_balances", ["session_id", "id"])
    op.create_index("ix_account_balances_session_id_last_updated", "account_balances",
                    ["session_id", "last_updated"])
    _recover_balances_from_trades()


def _recover_balances_from_trades() -> None:
    bind = op.get_bind()
    sessions = sa.table(
        "trading_sessions",
        sa.column("id", sa.Integer()),
        sa.column("symbol", sa.String()),
        sa.column("initial_balance", Money()),
        sa.column("base_currency", sa.String()),
        sa.column("total_balance", Money()),
        sa.column("available_balance", Money()),
        sa.column("reserved_balance", Money()),
        sa.column("peak_balance", Money()),
        sa.column("version", sa.Integer()),
    )
    trades = sa.table(
        "trades",
        sa.column("id", sa.Integer()),
        sa.column("session_id", sa.Integer()),
        sa.column("realized_pnl", Money()),
        sa.column("fees", Money()),
        sa.column("exit_time", UTCDateTime()),
    )
    positions = sa.table(
        "positions",
        sa.column("session_id", sa.Integer()),
        sa.column("symbol", sa.String()),
        sa.column("status", sa.String()),
        sa.column("quantity", Money()),
        sa.column("cost", Money()),
        sa.column("fees", Money()),
    )
    ledger = sa.table(
        "account_balances",
        sa.column("session_id", sa.Integer()),
        sa.column("base_currency", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("delta", Money()),
        sa.column("total_balance", Money()),
        sa.column("available_balance", Money()),
        sa.column("reserved_balance", Money()),
        sa.column("asset_balances", sa.JSON()),
        sa.column("reference", sa.String()),
        sa.column("last_updated", UTCDateTime()),
        sa.column("updated_by", sa.String()),
        sa.column("update_reason", sa.String()),
    )
    now = datetime.now(UTC)
    for sid, initial, currency in bind.execute(
        sa.select(sessions.c.id, sessions.c.initial_balance, sessions.c.base_currency).order_by(sessions.c.id)
    ).all():
        total = initial
        peak = initial
        pnl_sum = fee_sum = Decimal(0)
        count = 0
        for pnl, fees in bind.execute(
            sa.select(trades.c.realized_pnl, trades.c.fees)
            .where(trades.c.session_id == sid)
            .order_by(trades.c.exit_time, trades.c.id)
        ).all():
            pnl_sum += pnl
            fee_sum += fees
            count += 1
            total += pnl - fees
            peak = max(peak, total)
        open_rows = bind.execute(
            sa.select(positions.c.cost, positions.c.fees).where(
                positions.c.session_id == sid, positions.c.status == "open"
            )
        ).all()
        reserved = sum((cost for cost, _ in open_rows), Decimal(0))
        open_fees = sum((fees for _, fees in open_rows), Decimal(0))
        total -= open_fees
        available = total - reserved
        if available < 0:
            raise RuntimeError(
                f"session #{sid}: its trade history implies a balance of {total} but open positions hold "
                f"{reserved}; fix the history before migrating"
            )
        reason = (
            f"Recovered from trade history: initial {initial} + P&L {pnl_sum} − fees {fee_sum + open_fees} "
            f"({count} closed trades, {len(open_rows)} open positions)"
        )[:200]
        bind.execute(
            ledger.insert().values(
                session_id=sid,
                base_currency=currency,
                kind="recovered_from_trades",
                delta=total,
                total_balance=total,
                available_balance=available,
                reserved_balance=reserved,
                asset_balances={currency: format(available, "f")},
                reference="migration:0002",
                last_updated=now,
                updated_by="migration",
                update_reason=reason,
            )
        )
        bind.execute(
            sessions.update()
            .where(sessions.c.id == sid)
            .values(total_balance=total, available_balance=available, reserved_balance=reserved,
                    peak_balance=max(peak, total), version=1)
        )


def downgrade() -> None:
    op.drop_index("ix_account_balances_session_id_last_updated", table_name="account_balances")
    op.drop_index("ix_account_balances_session_id_id", table_name="account_balances")
    op.drop_table("account_balances")
    with op.batch_alter_table("trading_sessions") as batch:
        batch.drop_constraint(op.f("ck_trading_sessions_reserved_not_negative"), type_="check")
        batch.drop_constraint(op.f("ck_trading_sessions_available_not_negative"), type_="check")
        batch.drop_column("version")
        batch.drop_column("peak_balance")
        batch.drop_column("reserved_balance")
        batch.drop_column("available_balance")
        batch.drop_column("total_balance")
