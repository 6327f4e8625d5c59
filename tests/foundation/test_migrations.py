"""Alembic owns the schema: the chain upgrades, downgrades and upgrades again, and recovers balances exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from chalicelib.db.engine import get_engine
from chalicelib.db.migrate import downgrade, schema_status, upgrade
from chalicelib.db.models import Base
from chalicelib.db.types import Money, Quantity, UTCDateTime
from chalicelib.verify import verify

T0 = datetime(2024, 3, 1, tzinfo=UTC)

sessions_v1 = sa.table(
    "trading_sessions",
    sa.column("id", sa.Integer()), sa.column("strategy", sa.String()), sa.column("symbol", sa.String()),
    sa.column("timeframe", sa.String()), sa.column("exchange", sa.String()), sa.column("mode", sa.String()),
    sa.column("status", sa.String()), sa.column("initial_balance", Money()), sa.column("started_at", UTCDateTime()),
)
trades_v1 = sa.table(
    "trades",
    sa.column("session_id", sa.Integer()), sa.column("symbol", sa.String()), sa.column("side", sa.String()),
    sa.column("entry_price", Money()), sa.column("exit_price", Money()), sa.column("quantity", Quantity()),
    sa.column("entry_time", UTCDateTime()), sa.column("exit_time", UTCDateTime()),
    sa.column("realized_pnl", Money()), sa.column("fees", Money()), sa.column("exit_reason", sa.String()),
)
positions_v1 = sa.table(
    "positions",
    sa.column("session_id", sa.Integer()), sa.column("symbol", sa.String()), sa.column("side", sa.String()),
    sa.column("status", sa.String()), sa.column("entry_price", Money()), sa.column("quantity", Quantity()),
    sa.column("cost", Money()), sa.column("entry_time", UTCDateTime()), sa.column("fees", Money()),
)

# (initial, [(pnl, fees), …], open position (cost, fees) or None) → expected total, reserved, units (0003: the
# recovered balance starts the unit series, one unit per dollar)
HISTORIES = {
    1: ("1000", [("125.50", "1.10"), ("-40.25", "0.90"), ("10.00000001", "0.00000001")], None),
    2: ("250.00", [], None),
    3: ("5000", [("-100", "5"), ("300.12345678", "5")], ("400", "0.4")),
}
EXPECTED = {
    1: (Decimal("1093.25"), Decimal("0"), Decimal("1093.25")),
    2: (Decimal("250"), Decimal("0"), Decimal("250")),
    3: (Decimal("5189.72345678"), Decimal("400"), Decimal("5189.72345678")),
}


def _seed_first_revision(engine: Engine) -> None:
    with engine.begin() as conn:
        for sid, (initial, trades, open_pos) in HISTORIES.items():
            conn.execute(sessions_v1.insert().values(
                id=sid, strategy="ml_basic", symbol=f"SYM{sid}USDT", timeframe="1h", exchange="binance",
                mode="paper", status="ended" if sid == 1 else "active", initial_balance=Decimal(initial),
                started_at=T0))
            for i, (pnl, fees) in enumerate(trades):
                conn.execute(trades_v1.insert().values(
                    session_id=sid, symbol=f"SYM{sid}USDT", side="long", entry_price=Decimal("100"),
                    exit_price=Decimal("101"), quantity=Decimal("1"), entry_time=T0 + timedelta(hours=i),
                    exit_time=T0 + timedelta(hours=i, minutes=30), realized_pnl=Decimal(pnl), fees=Decimal(fees),
                    exit_reason="signal"))
            if open_pos:
                conn.execute(positions_v1.insert().values(
                    session_id=sid, symbol=f"SYM{sid}USDT", side="long", status="open", entry_price=Decimal("100"),
                    quantity=Decimal("4"), cost=Decimal(open_pos[0]), entry_time=T0, fees=Decimal(open_pos[1])))


def _balances(engine: Engine) -> dict[int, tuple[Decimal, Decimal, Decimal]]:
    t = sa.table("trading_sessions", sa.column("id", sa.Integer()), sa.column("total_balance", Money()),
                 sa.column("reserved_balance", Money()), sa.column("units", Money()))
    with engine.connect() as conn:
        return {r.id: (r.total_balance, r.reserved_balance, r.units) for r in conn.execute(sa.select(t))}


def _trade_rows(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        query = sa.select(trades_v1).order_by(sa.text("session_id"), sa.text("entry_time"))
        return [tuple(r) for r in conn.execute(query)]


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
def test_upgrading_a_first_revision_database_recovers_each_balance_exactly_from_its_trades(
    empty_database_url: str, db_kind: str
) -> None:
    engine = get_engine(empty_database_url)
    assert upgrade(engine, "0001").current == "0001"
    _seed_first_revision(engine)
    trades_before = _trade_rows(engine)

    assert upgrade(engine).at_head
    assert _balances(engine) == EXPECTED
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT session_id, kind, updated_by FROM account_balances ORDER BY session_id")).all()
    assert [tuple(r) for r in rows] == [(sid, "recovered_from_trades", "migration") for sid in (1, 2, 3)]
    report = verify(engine)
    assert report.ok, [s.problems for s in report.sessions]

    # Down to the schema without balances and up again: trades untouched, balances recovered the same.
    assert downgrade(engine, "0001").current == "0001"
    assert _trade_rows(engine) == trades_before
    assert upgrade(engine).at_head
    assert _trade_rows(engine) == trades_before
    assert _balances(engine) == EXPECTED
    assert verify(engine).ok


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
def test_the_models_and_the_migrations_agree(empty_database_url: str, db_kind: str) -> None:
    engine = get_engine(empty_database_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
def test_a_model_change_without_a_migration_is_detected(empty_database_url: str, db_kind: str) -> None:
    engine = get_engine(empty_database_url)
    upgrade(engine)
    metadata = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    sa.Table("trading_sessions", metadata, sa.Column("nickname", sa.String(20)), extend_existing=True)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert any(d[0] == "add_column" and d[3].name == "nickname" for d in diff)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
def test_status_reports_an_empty_database_as_behind(empty_database_url: str, db_kind: str) -> None:
    status = schema_status(get_engine(empty_database_url))
    assert status.current is None and not status.at_head


ledger_v2 = sa.table(
    "account_balances",
    sa.column("session_id", sa.Integer()), sa.column("base_currency", sa.String()), sa.column("kind", sa.String()),
    sa.column("delta", Money()), sa.column("total_balance", Money()), sa.column("available_balance", Money()),
    sa.column("reserved_balance", Money()), sa.column("asset_balances", sa.JSON()), sa.column("reference", sa.String()),
    sa.column("last_updated", UTCDateTime()), sa.column("updated_by", sa.String()),
    sa.column("update_reason", sa.String()),
)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
def test_0003_backfills_units_from_each_ledger_and_keeps_one_active_account_per_bot(
    empty_database_url: str, db_kind: str
) -> None:
    """A 0002 ledger (1,000 → +100 P&L → deposit 1,100 → −110 P&L → withdraw 500) gets the units of the worked
    example; two active sessions of one bot (a switch, then the other strategy's command, before 0003) become one
    active account, and the other ends with its ledger kept."""
    engine = get_engine(empty_database_url)
    upgrade(engine, "0002")
    steps = [("initial", "1000"), ("trade_pnl", "100"), ("deposit", "1100"), ("trade_pnl", "-110"),
             ("withdrawal", "-500")]
    with engine.begin() as conn:
        for sid, strategy in ((1, "ml_basic"), (2, "ma_crossover")):
            conn.execute(sessions_v1.insert().values(
                id=sid, strategy=strategy, symbol="BTCUSDT", timeframe="1h", exchange="binance", mode="paper",
                status="active", initial_balance=Decimal(1000), started_at=T0))
        total = Decimal(0)
        for i, (kind, delta) in enumerate(steps):
            total += Decimal(delta)
            conn.execute(ledger_v2.insert().values(
                session_id=1, base_currency="USD", kind=kind, delta=Decimal(delta), total_balance=total,
                available_balance=total, reserved_balance=Decimal(0), asset_balances={"USD": str(total)},
                reference=f"trade:{i}:pnl" if kind == "trade_pnl" else None, last_updated=T0 + timedelta(hours=i),
                updated_by="t", update_reason=kind))
        conn.execute(ledger_v2.insert().values(
            session_id=2, base_currency="USD", kind="initial", delta=Decimal(1000), total_balance=Decimal(1000),
            available_balance=Decimal(1000), reserved_balance=Decimal(0), asset_balances={"USD": "1000"},
            last_updated=T0, updated_by="t", update_reason="initial"))
        conn.execute(sa.text(f"UPDATE trading_sessions SET total_balance = '{total}', available_balance = '{total}' "
                             "WHERE id = 1"))
        conn.execute(sa.text("UPDATE trading_sessions SET total_balance = '1000', available_balance = '1000' "
                             "WHERE id = 2"))
    assert upgrade(engine).at_head
    with engine.connect() as conn:
        units = conn.execute(sa.text(
            "SELECT units, unit_value FROM account_balances WHERE session_id = 1 ORDER BY id")).all()
        statuses = dict(conn.execute(sa.text("SELECT id, status FROM trading_sessions")).all())
    assert [(Decimal(str(u)), Decimal(str(v))) for u, v in units] == [
        (Decimal(1000), Decimal(1)), (Decimal(1000), Decimal("1.1")), (Decimal(2000), Decimal("1.1")),
        (Decimal(2000), Decimal("1.045")), (Decimal("1521.531100478468899522"), Decimal("1.045"))]
    assert statuses == {1: "ended", 2: "active"}  # one active account per bot: the newest stays
    report = verify(engine)
    assert report.ok, [s.problems for s in report.sessions]
