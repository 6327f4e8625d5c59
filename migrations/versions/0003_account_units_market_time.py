"""One account per bot, units apart from capital flows, market time on every row.

* A bot's account is identified by (symbol, timeframe, exchange, mode); the strategy is an attribute that can
  change (``strategy_switch`` rows record it). Where two active sessions share that identity (possible before:
  a switch followed by the other strategy's command), the newest stays active and the others end; each keeps
  its own ledger, readable as before.
* Every ledger row gets the account's units after it, the value per unit, the performance index and the equity
  (``chalicelib.accounting``), backfilled in ledger order: opening rows start a series, deposits, withdrawals and
  manual sets issue or redeem units at the value per unit, trading rows move the value. Rows from before this
  revision carry no marks, so their equity is the ledger total (open positions at cost).
* ``market_time`` beside the recorded time: for existing ledger rows it is the recorded time, but no later than
  the account's last applied close; for trades the candle time they closed at; for tick rows the candle's close.
  The session caches its units, the peak value per unit (the drawdown reference, replacing the peak balance), the
  series base, the net contributions, and the last mark (set by the next tick).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from chalicelib.accounting import EMPTY, after_flow, after_trading, new_series
from chalicelib.db.types import Money, Units, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

OLD_KINDS = ("initial", "trade_pnl", "fee", "manual_set", "deposit", "withdrawal", "reset",
             "recovered_from_trades", "resumed")
NEW_KINDS = (*OLD_KINDS, "strategy_switch", "reopened")
OPENING = ("initial", "recovered_from_trades", "resumed", "reset")
FLOWS = ("deposit", "withdrawal", "manual_set")


def _kinds_check(kinds: tuple[str, ...]) -> sa.TextClause:
    return sa.text("kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")")


def _step(timeframe: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([mhdw])", timeframe.strip())
    if not match:
        return timedelta(0)
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def upgrade() -> None:
    with op.batch_alter_table("trading_sessions") as batch:
        batch.add_column(sa.Column("units", Units(), server_default="0", nullable=False))
        batch.add_column(sa.Column("unit_value", Units(), server_default="1", nullable=False))
        batch.add_column(sa.Column("peak_unit_value", Units(), server_default="1", nullable=False))
        batch.add_column(sa.Column("series_base", Units(), server_default="1", nullable=False))
        batch.add_column(sa.Column("net_contributions", Money(), server_default="0", nullable=False))
        batch.add_column(sa.Column("mark_price", Money(), nullable=True))
        batch.add_column(sa.Column("market_time", UTCDateTime(), nullable=True))
    with op.batch_alter_table("account_balances") as batch:
        for name, kind in (("units", Units()), ("unit_value", Units()), ("performance_index", Units()),
                           ("equity", Money()), ("market_time", UTCDateTime())):
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("trades") as batch:
        batch.add_column(sa.Column("market_time", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("recorded_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("tick_log") as batch:
        for name, kind in (("market_time", UTCDateTime()), ("equity", Money()), ("units", Units()),
                           ("unit_value", Units()), ("performance_index", Units()),
                           ("ledger_version", sa.Integer())):
            batch.add_column(sa.Column(name, kind, nullable=True))

    _end_duplicate_accounts()
    _backfill()

    with op.batch_alter_table("account_balances") as batch:
        for name in ("units", "unit_value", "performance_index", "equity", "market_time"):
            batch.alter_column(name, nullable=False)
        batch.drop_constraint(op.f("ck_account_balances_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_account_balances_kind"), _kinds_check(NEW_KINDS))
    with op.batch_alter_table("trades") as batch:
        batch.alter_column("market_time", nullable=False)
        batch.alter_column("recorded_at", nullable=False)
    op.drop_index("ix_account_balances_session_id_last_updated", table_name="account_balances")
    op.create_index("ix_account_balances_session_id_market_time", "account_balances", ["session_id", "market_time"])
    op.drop_index("uq_trading_sessions_one_active", table_name="trading_sessions")
    op.create_index("uq_trading_sessions_one_active", "trading_sessions", ["symbol", "timeframe", "exchange", "mode"],
                    unique=True, postgresql_where=sa.text("status = 'active'"),
                    sqlite_where=sa.text("status = 'active'"))
    with op.batch_alter_table("trading_sessions") as batch:
        batch.drop_column("peak_balance")


_sessions = sa.table(
    "trading_sessions",
    sa.column("id", sa.Integer()),
    sa.column("symbol", sa.String()),
    sa.column("timeframe", sa.String()),
    sa.column("exchange", sa.String()),
    sa.column("mode", sa.String()),
    sa.column("status", sa.String()),
    sa.column("ended_at", UTCDateTime()),
    sa.column("started_at", UTCDateTime()),
    sa.column("candle_cursor", UTCDateTime()),
    sa.column("units", Units()),
    sa.column("unit_value", Units()),
    sa.column("peak_unit_value", Units()),
    sa.column("series_base", Units()),
    sa.column("net_contributions", Money()),
    sa.column("market_time", UTCDateTime()),
    sa.column("total_balance", Money()),
    sa.column("peak_balance", Money()),
)
_ledger = sa.table(
    "account_balances",
    sa.column("id", sa.BigInteger()),
    sa.column("session_id", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("delta", Money()),
    sa.column("total_balance", Money()),
    sa.column("last_updated", UTCDateTime()),
    sa.column("units", Units()),
    sa.column("unit_value", Units()),
    sa.column("performance_index", Units()),
    sa.column("equity", Money()),
    sa.column("market_time", UTCDateTime()),
)
_trades = sa.table("trades", sa.column("id", sa.Integer()), sa.column("exit_time", UTCDateTime()),
                   sa.column("market_time", UTCDateTime()), sa.column("recorded_at", UTCDateTime()),
                   sa.column("session_id", sa.Integer()))
_ticks = sa.table("tick_log", sa.column("id", sa.BigInteger()), sa.column("session_id", sa.Integer()),
                  sa.column("candle_time", UTCDateTime()), sa.column("market_time", UTCDateTime()))


def _end_duplicate_accounts() -> None:
    bind = op.get_bind()
    groups: dict[tuple[str, str, str, str], list[tuple[int, object]]] = {}
    for sid, symbol, timeframe, exchange, mode, started in bind.execute(
        sa.select(_sessions.c.id, _sessions.c.symbol, _sessions.c.timeframe, _sessions.c.exchange, _sessions.c.mode,
                  _sessions.c.started_at).where(_sessions.c.status == "active").order_by(_sessions.c.id)
    ).all():
        groups.setdefault((symbol, timeframe, exchange, mode), []).append((sid, started))
    for key, members in groups.items():
        keep = members[-1][0]
        for sid, started in members[:-1]:
            bind.execute(_sessions.update().where(_sessions.c.id == sid).values(status="ended", ended_at=started))
            log.warning("session #%s ended: session #%s is now the one account for %s", sid, keep, " ".join(key))


def _backfill() -> None:
    bind = op.get_bind()
    sessions = bind.execute(
        sa.select(_sessions.c.id, _sessions.c.timeframe, _sessions.c.candle_cursor).order_by(_sessions.c.id)
    ).all()
    for sid, timeframe, cursor in sessions:
        step = _step(timeframe)
        # Rows from before this revision belong to the market no later than the account's last applied close.
        last_close = cursor + step if cursor is not None else None
        state = EMPTY
        contributions = Decimal(0)
        previous_total = Decimal(0)
        for row_id, kind, delta, total, recorded in bind.execute(
            sa.select(_ledger.c.id, _ledger.c.kind, _ledger.c.delta, _ledger.c.total_balance, _ledger.c.last_updated)
            .where(_ledger.c.session_id == sid).order_by(_ledger.c.id)
        ).all():
            if kind in OPENING:
                state = new_series(state, max(total, Decimal(0)))
                contributions = total
            elif kind in FLOWS:
                state = after_flow(state, previous_total, delta)
                contributions += delta
            else:
                state = after_trading(state, total)
            previous_total = total
            bind.execute(_ledger.update().where(_ledger.c.id == row_id).values(
                units=state.units, unit_value=state.unit_value, performance_index=state.performance_index,
                equity=total, market_time=min(recorded, last_close) if last_close is not None else recorded))
        bind.execute(_sessions.update().where(_sessions.c.id == sid).values(
            units=state.units, unit_value=state.unit_value, peak_unit_value=state.peak_unit_value,
            series_base=state.series_base, net_contributions=contributions,
            market_time=cursor + step if cursor is not None else None))
        if step:
            for tick_id, candle_time in bind.execute(
                sa.select(_ticks.c.id, _ticks.c.candle_time).where(_ticks.c.session_id == sid)
            ).all():
                bind.execute(_ticks.update().where(_ticks.c.id == tick_id).values(market_time=candle_time + step))
    bind.execute(_trades.update().values(market_time=_trades.c.exit_time, recorded_at=_trades.c.exit_time))


def downgrade() -> None:
    bind = op.get_bind()
    bind.execute(_ledger.delete().where(_ledger.c.kind.in_(("strategy_switch", "reopened"))))
    with op.batch_alter_table("trading_sessions") as batch:
        batch.add_column(sa.Column("peak_balance", Money(), server_default="0", nullable=False))
    bind.execute(_sessions.update().values(peak_balance=_sessions.c.total_balance))
    op.drop_index("uq_trading_sessions_one_active", table_name="trading_sessions")
    op.create_index("uq_trading_sessions_one_active", "trading_sessions", ["strategy", "symbol", "timeframe", "mode"],
                    unique=True, postgresql_where=sa.text("status = 'active'"),
                    sqlite_where=sa.text("status = 'active'"))
    op.drop_index("ix_account_balances_session_id_market_time", table_name="account_balances")
    op.create_index("ix_account_balances_session_id_last_updated", "account_balances", ["session_id", "last_updated"])
    with op.batch_alter_table("account_balances") as batch:
        batch.drop_constraint(op.f("ck_account_balances_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_account_balances_kind"), _kinds_check(OLD_KINDS))
        for name in ("units", "unit_value", "performance_index", "equity", "market_time"):
            batch.drop_column(name)
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("market_time")
        batch.drop_column("recorded_at")
    with op.batch_alter_table("tick_log") as batch:
        for name in ("market_time", "equity", "units", "unit_value", "performance_index", "ledger_version"):
            batch.drop_column(name)
    with op.batch_alter_table("trading_sessions") as batch:
        for name in ("units", "unit_value", "peak_unit_value", "series_base", "net_contributions", "mark_price",
                     "market_time"):
            batch.drop_column(name)
