"""Scheduled deposits over a simulated month with missed and duplicated dispatcher runs: each period is applied
exactly once, through the manual deposit's ledger path, attributed to the schedule's creator (issue 14)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select

from chalicelib import balances, fleet
from chalicelib.db.models import AccountBalance, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify

START = datetime(2030, 1, 1, tzinfo=UTC)


def open_account(engine: Engine) -> int:
    from chalicelib.bot.sessions import open_session
    from chalicelib.bots import BotSpec

    opening = open_session(engine, BotSpec(strategy="ml_basic", symbol="BTCUSDT"), initial_balance=Decimal(1000))
    return opening.session_id


def deposits(engine: Engine, session_id: int) -> list[AccountBalance]:
    with read_transaction(engine) as db:
        return list(db.execute(select(AccountBalance).where(AccountBalance.session_id == session_id,
                                                            AccountBalance.kind == "deposit")
                               .order_by(AccountBalance.id)).scalars())


def test_a_month_of_hourly_runs_with_gaps_and_duplicates_applies_each_weekly_deposit_once(engine: Engine) -> None:
    session_id = open_account(engine)
    weekly = fleet.add_schedule(Decimal("100"), "1w", "weekly savings", actor=Actor("alice"), session_id=session_id,
                                starts_at=START, engine=engine)
    daily = fleet.add_schedule(Decimal("2.50"), "1d", "daily top-up", actor=Actor("bob"), session_id=session_id,
                               starts_at=START + timedelta(hours=12), engine=engine)
    rng = random.Random(14)
    end = START + timedelta(days=31)
    now = START - timedelta(hours=3)
    runs = 0
    while now <= end:
        if START + timedelta(days=9) <= now < START + timedelta(days=12):
            now += timedelta(hours=1)  # a three-day outage: the dispatcher never ran (missed periods)
            continue
        if rng.random() < 0.2:
            now += timedelta(hours=1)  # a missed hourly run
            continue
        repeats = 2 if rng.random() < 0.3 else 1  # EventBridge delivered the same event twice
        for _ in range(repeats):
            fleet.apply_due_deposits(now, engine=engine)
            runs += 1
        if rng.random() < 0.1:  # two dispatchers overlapping on the same moment
            threads = [threading.Thread(target=fleet.apply_due_deposits, args=(now,), kwargs={"engine": engine})
                       for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        now += timedelta(hours=1)

    rows = deposits(engine, session_id)
    weekly_rows = [r for r in rows if f":schedule:{weekly.schedule_id}:" in (r.reference or "")]
    daily_rows = [r for r in rows if f":schedule:{daily.schedule_id}:" in (r.reference or "")]
    # weekly: 1, 8, 15, 22, 29 Jan; daily at noon from 1 to 31 Jan (the last at 31 Jan 12:00 ≤ the end)
    assert sorted(int((r.reference or "").rsplit(":", 1)[1]) for r in weekly_rows) == [0, 1, 2, 3, 4]
    assert sorted(int((r.reference or "").rsplit(":", 1)[1]) for r in daily_rows) == list(range(31))
    assert len(rows) == 5 + 31
    label = f"schedule #{weekly.schedule_id}"
    assert all(r.delta == Decimal("100") and r.updated_by == "alice" and r.updated_by_label == label
               and r.update_reason == "weekly savings" for r in weekly_rows)
    assert all(r.delta == Decimal("2.50") and r.updated_by == "bob" for r in daily_rows)
    with read_transaction(engine) as db:
        session = db.get(TradingSession, session_id)
        assert session is not None and session.total_balance == Decimal(1000) + 5 * 100 + 31 * Decimal("2.50")
    assert verify(engine).ok
    # the next deposit each schedule shows is the first one after the month
    views = {s.schedule_id: s for s in fleet.list_schedules(engine, now=end)}
    assert views[weekly.schedule_id].next_deposit_at == START + timedelta(weeks=5)
    assert views[daily.schedule_id].next_deposit_at == START + timedelta(days=31, hours=12)


def test_a_scheduled_deposit_is_the_same_ledger_row_as_a_manual_deposit(engine: Engine) -> None:
    session_id = open_account(engine)
    schedule = fleet.add_schedule(Decimal("100"), "1d", "savings", actor=Actor("alice"), session_id=session_id,
                                  starts_at=START, engine=engine)
    fleet.apply_due_deposits(START, engine=engine)
    manual = balances.change_balance("deposit", Decimal("100"), reason="savings", actor=Actor("alice"),
                                     session_id=session_id, engine=engine)
    scheduled_row, manual_row = deposits(engine, session_id)
    assert manual_row.id == manual.entry.id
    assert (scheduled_row.kind, scheduled_row.delta, scheduled_row.updated_by, scheduled_row.update_reason) == (
        manual_row.kind, manual_row.delta, manual_row.updated_by, manual_row.update_reason)
    # the key is scoped to the schedule's creator, like any request's (balances.change_balance)
    assert scheduled_row.reference == f"request:alice:schedule:{schedule.schedule_id}:0"


def test_a_paused_schedule_deposits_nothing_and_an_ended_account_stops_it(engine: Engine) -> None:
    session_id = open_account(engine)
    schedule = fleet.add_schedule(Decimal("100"), "1d", "savings", actor=Actor("alice"), session_id=session_id,
                                  starts_at=START, engine=engine)
    fleet.set_schedule_status(schedule.schedule_id, "paused", engine=engine)
    assert fleet.apply_due_deposits(START + timedelta(days=3), engine=engine) == []
    assert deposits(engine, session_id) == []
