"""The ledger service: every change is one row, the cache follows it, and impossible results are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ledger_testing
import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from chalicelib import ledger
from chalicelib.balances import change_balance, history_page, read_summary
from chalicelib.db.models import AccountBalance, Position, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify

OWNER = Actor("owner")


def start(engine: Engine, amount: str = "1000", **kw: str) -> int:
    params = {"strategy": "ml_basic", "symbol": "BTCUSDT", "timeframe": "1h"} | kw
    with write_transaction(engine) as db:
        s = ledger.start_session(db, exchange="binance", mode="paper", initial_balance=Decimal(amount), **params)
        return s.id


def ledger_rows(engine: Engine, session_id: int) -> list[AccountBalance]:
    with read_transaction(engine) as db:
        return list(db.execute(select(AccountBalance).where(AccountBalance.session_id == session_id)
                               .order_by(AccountBalance.id)).scalars())


def test_starting_a_session_records_the_initial_capital_as_the_first_ledger_row(engine: Engine) -> None:
    sid = start(engine, "1250.50")
    rows = ledger_rows(engine, sid)
    assert [(r.kind, r.delta, r.total_balance) for r in rows] == [
        ("initial", Decimal("1250.50"), Decimal("1250.50"))
    ]
    summary = read_summary(sid, engine=engine)
    assert summary.session.total_balance == Decimal("1250.50")
    assert summary.session.available_balance == Decimal("1250.50")
    # The first capital starts the unit series: one unit per dollar, each worth 1.
    assert (summary.session.units, summary.session.unit_value, summary.session.peak_unit_value) == (
        Decimal("1250.50"), Decimal(1), Decimal(1))
    assert rows[0].units == Decimal("1250.50") and rows[0].unit_value == 1 and rows[0].performance_index == 1
    assert (rows[0].update_reason, rows[0].updated_by) == ("Initial capital", "system")  # the history's first line
    assert verify(engine).ok


def test_a_new_accounts_first_row_carries_who_opened_it_when_and_where_in_the_market(engine: Engine) -> None:
    """A bot started by its owner from a chosen candle: the first row says so — the owner (not "system"), the moment
    given (not the wall clock), and the market time the account begins at (not that moment)."""
    when = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    begins = datetime(2024, 1, 1, 5, tzinfo=UTC)
    with write_transaction(engine) as db:
        sid = ledger.start_session(db, strategy="ml_basic", symbol="BTCUSDT", timeframe="1h", exchange="binance",
                                   mode="paper", initial_balance=Decimal("1250.50"), actor=Actor("owner", "Olivia"),
                                   reason="Seed capital", now=when, market_time=begins).id
    [row] = ledger_rows(engine, sid)
    assert (row.updated_by, row.updated_by_label, row.update_reason) == ("owner", "Olivia", "Seed capital")
    assert (row.last_updated, row.market_time) == (when, begins)


def test_set_deposit_and_withdraw_each_write_one_row_with_the_exact_delta(engine: Engine) -> None:
    sid = start(engine, "1000")
    change_balance("deposit", Decimal("0.10"), reason="dime", actor=OWNER, engine=engine)
    change_balance("deposit", Decimal("0.20"), reason="two dimes", actor=OWNER, engine=engine)
    change_balance("set", Decimal("5000.12345678"), reason="Capital increase", actor=OWNER, engine=engine)
    change_balance("withdraw", Decimal("0.00000001"), reason="one satoshi of a dollar", actor=OWNER, engine=engine)
    rows = ledger_rows(engine, sid)
    assert [r.kind for r in rows] == ["initial", "deposit", "deposit", "manual_set", "withdrawal"]
    assert [r.delta for r in rows] == [
        Decimal("1000"), Decimal("0.10"), Decimal("0.20"), Decimal("3999.82345678"), Decimal("-0.00000001")
    ]
    assert rows[-1].total_balance == Decimal("5000.12345677")
    assert sum(r.delta for r in rows) == rows[-1].total_balance
    assert rows[3].updated_by == "owner" and rows[3].update_reason == "Capital increase"
    assert verify(engine).ok


def test_a_withdrawal_beyond_the_available_balance_is_refused_and_writes_nothing(engine: Engine) -> None:
    sid = start(engine, "100")
    with pytest.raises(ledger.InsufficientFunds, match=r"available balance would be -\$0\.01"):
        change_balance("withdraw", Decimal("100.01"), reason="too much", actor=OWNER, engine=engine)
    assert len(ledger_rows(engine, sid)) == 1
    assert read_summary(sid, engine=engine).session.total_balance == Decimal("100")


def _open_position(engine: Engine, sid: int) -> int:
    """0.01 BTC bought at 40,000: cost 400 reserved, entry fee 0.40."""
    now = datetime(2024, 1, 1, tzinfo=UTC)
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        pos = Position(session_id=sid, symbol="BTCUSDT", side="long", status="open", entry_price=Decimal("40000"),
                       quantity=Decimal("0.01"), cost=Decimal("400"), entry_time=now, fees=Decimal("0.4"))
        db.add(pos)
        db.flush()
        ledger_testing.record_position_opened(db, session, cost=Decimal("400"), fee=Decimal("0.4"),
                                      reference=f"position:{pos.id}:open", now=now)
        return pos.id


def test_setting_the_total_below_what_open_positions_hold_is_refused(engine: Engine) -> None:
    sid = start(engine, "1000")
    _open_position(engine, sid)
    summary = read_summary(sid, engine=engine)
    assert summary.session.reserved_balance == Decimal("400")
    assert summary.session.available_balance == Decimal("599.6")
    assert summary.latest is not None and summary.latest.asset_balances["BTC"] == "0.01"
    with pytest.raises(ledger.InsufficientFunds, match=r"held by open positions"):
        change_balance("set", Decimal("300"), reason="shrink", actor=OWNER, engine=engine)
    assert verify(engine).ok


def test_a_reset_writes_off_open_positions_and_starts_a_new_unit_series_in_the_same_ledger(engine: Engine) -> None:
    sid = start(engine, "1000")
    position_id = _open_position(engine, sid)
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        ledger.record_reset(db, session, Decimal("2000"), reason="start over", actor=OWNER)
    rows = ledger_rows(engine, sid)
    assert [r.kind for r in rows] == ["initial", "fee", "reset"]
    reset = rows[-1]
    assert (reset.total_balance, reset.reserved_balance, reset.delta) == (Decimal(2000), 0, Decimal("1000.4"))
    assert (reset.units, reset.unit_value) == (Decimal(2000), Decimal(1))
    # The index chains across the reset: the fee had cost 0.04 % before it.
    assert reset.performance_index == rows[1].performance_index == Decimal("0.9996")
    with read_transaction(engine) as db:
        assert db.get(Position, position_id).status == "closed"  # type: ignore[union-attr]
    assert verify(engine).ok


def test_an_idempotency_key_makes_a_retried_request_change_nothing(engine: Engine) -> None:
    sid = start(engine, "1000")
    first = change_balance("deposit", Decimal("50"), reason="once", actor=OWNER, idempotency_key="abc", engine=engine)
    again = change_balance("deposit", Decimal("50"), reason="once", actor=OWNER, idempotency_key="abc", engine=engine)
    assert not first.replayed and again.replayed
    assert again.entry.id == first.entry.id
    assert read_summary(sid, engine=engine).session.total_balance == Decimal("1050")


def test_the_database_refuses_a_second_active_session_for_the_same_bot(engine: Engine) -> None:
    start(engine)
    with pytest.raises(IntegrityError):
        start(engine)
    start(engine, symbol="ETHUSDT")  # another bot is fine


def test_the_database_refuses_negative_available_balance_and_non_positive_prices(engine: Engine) -> None:
    sid = start(engine)
    # pg8000 reports a CHECK violation as ProgrammingError, sqlite3 as IntegrityError: match the constraint name.
    with pytest.raises(DBAPIError, match="ck_trading_sessions_available_not_negative"), write_transaction(engine) as db:
        db.get(TradingSession, sid).available_balance = Decimal("-1")  # type: ignore[union-attr]
    with pytest.raises(DBAPIError, match="ck_positions_entry_price_positive"), write_transaction(engine) as db:
        db.add(Position(session_id=sid, symbol="BTCUSDT", side="long", status="open", entry_price=Decimal("0"),
                        quantity=Decimal("1"), cost=Decimal("1"), entry_time=datetime.now(UTC)))
    with pytest.raises(DBAPIError, match="ck_positions_quantity_positive"), write_transaction(engine) as db:
        db.add(Position(session_id=sid, symbol="BTCUSDT", side="long", status="open", entry_price=Decimal("1"),
                        quantity=Decimal("-1"), cost=Decimal("1"), entry_time=datetime.now(UTC)))


def test_money_survives_the_database_exactly_beyond_float_precision(engine: Engine) -> None:
    amount = "123456789012.12345678"  # 20 significant digits: a float keeps ~16
    sid = start(engine, amount)
    assert read_summary(sid, engine=engine).session.total_balance == Decimal(amount)


def test_history_pages_newest_first_without_gaps_or_repeats(engine: Engine) -> None:
    sid = start(engine)
    for i in range(23):
        change_balance("deposit", Decimal(i + 1), reason=f"d{i}", actor=OWNER, engine=engine)
    seen: list[int] = []
    cursor = None
    with read_transaction(engine) as db:
        while True:
            rows, cursor = history_page(db, sid, limit=5, before=cursor)
            seen.extend(r.id for r in rows)
            if cursor is None:
                break
    assert len(seen) == 24 and seen == sorted(seen, reverse=True) and len(set(seen)) == 24


def test_the_peak_value_per_unit_follows_trading_and_a_withdrawal_leaves_the_drawdown_alone(engine: Engine) -> None:
    sid = start(engine, "1000")
    with write_transaction(engine) as db:
        s = ledger.lock_session(db, sid)
        assert s is not None
        ledger.post(db, s, kind="trade_pnl", delta=Decimal("100"), reason="win", reference="trade:1:pnl")
        ledger.post(db, s, kind="trade_pnl", delta=Decimal("-50"), reason="loss", reference="trade:2:pnl")
        assert (s.unit_value, s.peak_unit_value) == (Decimal("1.05"), Decimal("1.1"))  # a new high, then 5 % off
        ledger.record_withdrawal(db, s, Decimal("500"), reason="take profit home", actor=OWNER)
        assert s.total_balance == Decimal("550")
        # 500 / 1.05 units redeemed; value per unit, peak and drawdown unchanged by the flow
        assert s.units == Decimal("523.809523809523809524")
        assert (s.unit_value, s.peak_unit_value) == (Decimal("1.05"), Decimal("1.1"))
    with read_transaction(engine) as db:
        saved = db.get(TradingSession, sid)
        assert saved is not None and saved.peak_unit_value == Decimal("1.1")  # the peak is what was stored


def test_balance_change_24h_compares_with_the_balance_in_force_24_hours_ago(engine: Engine) -> None:
    now = datetime.now(UTC)
    with write_transaction(engine) as db:
        s = ledger.start_session(db, strategy="x", symbol="BTCUSDT", timeframe="1h", exchange="binance",
                                 mode="paper", initial_balance=Decimal("1000"), now=now - timedelta(days=3))
        ledger.record_deposit(db, s, Decimal("1000"), reason="two days ago", actor=OWNER, now=now - timedelta(days=2))
        ledger.record_deposit(db, s, Decimal("500"), reason="an hour ago", actor=OWNER, now=now - timedelta(hours=1))
        sid = s.id
    summary = read_summary(sid, engine=engine)
    assert summary.balance_24h_ago == Decimal("2000")
    # Deposits are not performance: the plain change is all flows, the 24 h performance is 0.
    assert summary.change_24h_percent == Decimal("0.00")
    assert (summary.balance_delta_24h, summary.window.net_flows, summary.pnl_24h) == (Decimal(500), Decimal(500), 0)


def test_rows_count_matches_changes(engine: Engine) -> None:
    sid = start(engine)
    with read_transaction(engine) as db:
        assert db.execute(select(func.count()).select_from(AccountBalance)).scalar_one() == 1
        assert db.execute(select(func.count()).where(AccountBalance.session_id == sid)).scalar_one() == 1


# --- what each named operation writes: the row a user reads back in the history ------------------------------------

WHEN = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)  # a change dated by its caller (a replay, a scheduled deposit)
KEYED = Actor("owner", "Alice")


def _row_as_read(engine: Engine, sid: int, change: object) -> tuple[AccountBalance, AccountBalance]:
    """Make ``change(db, session)`` under the lock; the row it returned and the same row read back."""
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        returned = change(db, session)  # type: ignore[operator]
    [read_back] = [r for r in ledger_rows(engine, sid) if r.id == returned.id]
    return returned, read_back


CHANGES = {
    # op: (the change, kind, delta, total after, reference)
    "a sub-dollar deposit": (
        lambda db, s: ledger.record_deposit(db, s, Decimal("0.5"), reason="spare change", actor=KEYED,
                                            reference="request:owner:d1", now=WHEN),
        "deposit", Decimal("0.5"), Decimal("1000.5"), "request:owner:d1"),
    "a sub-dollar withdrawal": (
        lambda db, s: ledger.record_withdrawal(db, s, Decimal("0.5"), reason="spare change", actor=KEYED,
                                               reference="request:owner:w1", now=WHEN),
        "withdrawal", Decimal("-0.5"), Decimal("999.5"), "request:owner:w1"),
    "a set to zero": (
        lambda db, s: ledger.record_manual_set(db, s, Decimal(0), reason="spare change", actor=KEYED,
                                               reference="request:owner:s1", now=WHEN),
        "manual_set", Decimal("-1000"), Decimal(0), "request:owner:s1"),
    "a set above the balance": (
        lambda db, s: ledger.record_manual_set(db, s, Decimal("1234.5"), reason="spare change", actor=KEYED,
                                               reference="request:owner:s2", now=WHEN),
        "manual_set", Decimal("234.5"), Decimal("1234.5"), "request:owner:s2"),
}


@pytest.mark.parametrize("what", list(CHANGES))
def test_a_manual_change_writes_its_kind_amount_balance_reason_actor_reference_and_time(engine: Engine,
                                                                                        what: str) -> None:
    sid = start(engine, "1000")
    change, kind, delta, total, reference = CHANGES[what]
    returned, row = _row_as_read(engine, sid, change)
    for r in (returned, row):  # the API answers with the returned row; the history reads it back
        assert (r.kind, r.delta, r.total_balance, r.available_balance, r.reserved_balance) == (
            kind, delta, total, total, 0)
        assert (r.update_reason, r.updated_by, r.updated_by_label, r.reference) == (
            "spare change", "owner", "Alice", reference)
        assert r.last_updated == WHEN and r.market_time == WHEN  # dated as asked, not by the wall clock
    assert read_summary(sid, engine=engine).session.total_balance == total
    assert verify(engine).ok


def test_an_event_moves_no_money_and_names_who_why_and_when(engine: Engine) -> None:
    sid = start(engine, "1000")
    returned, row = _row_as_read(engine, sid, lambda db, s: ledger.record_event(
        db, s, "strategy_switch", reason="Strategy changed from a to b", actor=KEYED, now=WHEN))
    for r in (returned, row):
        assert (r.kind, r.delta, r.total_balance, r.available_balance, r.reference) == (
            "strategy_switch", 0, Decimal(1000), Decimal(1000), None)
        assert (r.update_reason, r.updated_by, r.updated_by_label) == ("Strategy changed from a to b", "owner", "Alice")
        assert r.last_updated == WHEN and r.market_time == WHEN
    assert verify(engine).ok


@pytest.mark.parametrize(("total", "cash"), [(Decimal(0), "0.00"), (Decimal("0.5"), "0.50")])
def test_a_reset_to_under_a_dollar_writes_off_the_open_position_at_the_accounts_market_time(
        engine: Engine, total: Decimal, cash: str) -> None:
    market_time = datetime(2024, 1, 5, tzinfo=UTC)  # the account's market clock (a replay), not the wall clock
    with write_transaction(engine) as db:
        sid = ledger.start_session(db, strategy="ml_basic", symbol="BTCUSDT", timeframe="1h", exchange="binance",
                                   mode="paper", initial_balance=Decimal(1000), market_time=market_time).id
    position_id = _open_position(engine, sid)
    returned, row = _row_as_read(engine, sid, lambda db, s: ledger.record_reset(
        db, s, total, reason="start over", actor=KEYED, now=WHEN))
    for r in (returned, row):
        assert (r.kind, r.delta, r.total_balance, r.available_balance, r.reserved_balance, r.reference) == (
            "reset", total - Decimal("999.6"), total, total, 0, None)
        assert r.asset_balances == {"USD": cash}  # the BTC is written off with the position
        assert (r.update_reason, r.updated_by, r.updated_by_label, r.last_updated) == (
            "start over", "owner", "Alice", WHEN)
    with read_transaction(engine) as db:
        position = db.get(Position, position_id)
        assert position is not None
        assert (position.status, position.exit_reason, position.exit_time) == ("closed", "reset", market_time)
        assert (position.exit_price, position.realized_pnl) == (None, None)
    assert verify(engine).ok


@pytest.mark.parametrize("op", ["deposit", "withdraw", "set"])
def test_a_balance_change_reads_the_account_and_its_positions_once_then_writes(engine: Engine, op: str) -> None:
    """Issue 15's four round trips: the lock reads the session with its open positions in one statement, and the
    change is written without reading them again (it values the positions the lock read)."""
    sid = start(engine, "1000")
    _open_position(engine, sid)
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split())[:40])

    event.listen(engine, "before_cursor_execute", before)
    try:
        change_balance(op, Decimal(500), reason="r", actor=OWNER, session_id=sid, engine=engine)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert [s for s in seen if s.startswith("SELECT")] == ["SELECT trading_sessions.id, trading_sess"], seen
    after = {"deposit": Decimal("1499.6"), "withdraw": Decimal("499.6"), "set": Decimal(500)}[op]
    assert read_summary(sid, engine=engine).session.total_balance == after  # 999.60 after the entry fee


def test_an_idempotency_key_reused_on_another_account_makes_that_accounts_change(engine: Engine) -> None:
    """The key is scoped to the actor and the account: the same request id sent to two bots changes both."""
    first = start(engine, "1000")
    second = start(engine, "1000", symbol="ETHUSDT")
    a = change_balance("deposit", Decimal(50), reason="top up", actor=OWNER, session_id=first, idempotency_key="k",
                       engine=engine)
    b = change_balance("deposit", Decimal(50), reason="top up", actor=OWNER, session_id=second, idempotency_key="k",
                       engine=engine)
    assert not a.replayed and not b.replayed and a.entry.id != b.entry.id
    assert [read_summary(s, engine=engine).session.total_balance for s in (first, second)] == [1050, 1050]


def test_open_positions_come_in_the_order_they_were_opened_whatever_their_place_on_disk(engine: Engine) -> None:
    """GET /api/positions, `atb live`'s summary and the bot's opening list show an account's open positions oldest
    first. Three positions opened, the first closed, its old row version vacuumed away, a fourth opened: on
    PostgreSQL the fourth's row takes the freed slot at the head of the table, before the second's and third's; the
    list is still the second, third and fourth. (SQLite keeps rows in id order on disk: the ORDER BY is seen on
    PostgreSQL.)"""
    sid = start(engine, "2000")
    first, second, third = (_open_position(engine, sid) for _ in range(3))
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        position = db.get(Position, first)
        assert position is not None
        position.status = "closed"
        ledger_testing.record_position_closed(db, session, position_id=first, pnl=Decimal(0), exit_fee=Decimal(0),
                                              released_cost=Decimal(400))
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()  # VACUUM runs outside a transaction
        try:
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            raw.cursor().execute("VACUUM positions")
        finally:
            raw.driver_connection.autocommit = False  # type: ignore[union-attr]
            raw.close()
    fourth = _open_position(engine, sid)
    with read_transaction(engine) as db:
        on_disk = list(db.execute(select(Position.id).where(Position.session_id == sid, Position.status == "open")
                                  .order_by(None)).scalars())
        assert sorted(on_disk) == [second, third, fourth]
        if engine.dialect.name == "postgresql":  # the scenario is real: unordered, the fourth comes first
            assert on_disk == [fourth, second, third]
        assert [p.id for p in ledger.open_positions(db, sid)] == [second, third, fourth]
    assert verify(engine).ok
