"""A writer that waited for the session lock sees what the writer before it did (PostgreSQL, READ COMMITTED).

``ledger.lock`` locks the session and reads its open positions and an idempotency key's earlier row in one
statement. A statement that waits for the lock sees the locked row as the other writer left it, but the rest as it
was when the statement started: without care it would miss a position the other writer opened and a row the other
writer wrote for the same request (a retried request written twice). This pins that it does not.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import ledger_testing
import pytest
from sqlalchemy import Engine

from chalicelib import ledger
from chalicelib.bot.sessions import open_session
from chalicelib.bots import BotSpec
from chalicelib.db.models import Position
from chalicelib.db.types import utcnow
from chalicelib.db.uow import write_transaction

pytestmark = pytest.mark.postgres_only


def test_a_waiting_writer_sees_the_position_and_the_row_the_first_writer_committed(pg_engine: Engine) -> None:
    spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(pg_engine, spec, initial_balance=Decimal(1000)).session_id
    first_has_lock, waiter_started = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def first() -> None:
        with write_transaction(pg_engine) as db:
            locked = ledger.lock(db, sid)
            assert locked is not None
            first_has_lock.set()
            waiter_started.wait(5)
            position = Position(session_id=sid, symbol="BTCUSDT", side="long", status="open",
                                entry_price=Decimal(100), quantity=Decimal(1), cost=Decimal(100),
                                stop_loss=Decimal(90), take_profit=Decimal(200), entry_time=utcnow(), fees=Decimal(0))
            db.add(position)
            db.flush()
            ledger_testing.record_position_opened(db, locked.session, cost=Decimal(100), fee=Decimal(0),
                                                  reference=ledger.request_reference("same-request"))
            threading.Event().wait(0.3)  # the waiter is now blocked on the lock

    def waiter() -> None:
        first_has_lock.wait(5)
        with write_transaction(pg_engine) as db:
            waiter_started.set()
            locked = ledger.lock(db, sid, reference=ledger.request_reference("same-request"))
            assert locked is not None
            seen["positions"] = [p.quantity for p in locked.positions]
            seen["earlier"] = locked.earlier
            seen["reserved"] = locked.session.reserved_balance

    threads = [threading.Thread(target=first), threading.Thread(target=waiter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["reserved"] == Decimal(100)
    assert seen["positions"] == [Decimal(1)], "the waiter missed the position opened before it got the lock"
    assert seen["earlier"] is not None, "the waiter missed the row the same request already wrote"


def test_every_shape_of_the_lock_reads_the_version_it_started_with_from_its_own_alias() -> None:
    """The re-read above depends on the "version as the statement started" coming from a second scan of the
    session row (an alias), not from the locked row itself; a statement built wrongly once stays cached."""
    import itertools

    from sqlalchemy.dialects import postgresql

    from chalicelib.ledger import store

    for reference, locking, skip in itertools.product((False, True), repeat=3):
        sql = str(store._lock_statement(reference=reference, locking=locking, skip_locked=skip)
                  .compile(dialect=postgresql.dialect()))
        assert "(SELECT trading_sessions_1.version" in sql and "FROM trading_sessions AS trading_sessions_1" in sql
        assert ("FOR UPDATE OF trading_sessions" in sql) == locking and ("SKIP LOCKED" in sql) == (locking and skip)


def test_a_session_read_before_the_lock_is_refreshed_by_it(pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching a bot's strategy reads its account, then locks it. A deposit committed between the two must not be
    lost: the lock's row replaces what the first read put in the ORM session (``populate_existing``), so the switch
    posts its event on the balance with the deposit, and the account still checks out."""
    from chalicelib.balances import change_balance
    from chalicelib.bot import sessions
    from chalicelib.ledger import Actor
    from chalicelib.verify import verify

    spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(pg_engine, spec, initial_balance=Decimal(1000)).session_id
    find_active = sessions._find_active
    deposited: list[Decimal] = []

    def found_then_another_writer_commits(db: object, bot: BotSpec) -> object:
        account = find_active(db, bot)  # type: ignore[arg-type]
        # Another writer (its own connection) deposits and commits after the read, before the lock.
        other = threading.Thread(target=lambda: deposited.append(change_balance(
            "deposit", Decimal(500), reason="Top-up during the switch", actor=Actor("owner"), session_id=sid,
            engine=pg_engine).session.total_balance))
        other.start()
        other.join(10)
        return account

    monkeypatch.setattr(sessions, "_find_active", found_then_another_writer_commits)
    switched = BotSpec(strategy="ml_basic", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    opening = open_session(pg_engine, switched)
    assert deposited == [Decimal(1500)]
    assert opening.switched_from == "ma_crossover"
    assert opening.total_balance == Decimal(1500), "the switch posted on the balance read before the deposit"
    with write_transaction(pg_engine) as db:
        locked = ledger.lock(db, sid)
        assert locked is not None and locked.session.total_balance == Decimal(1500)
    report = verify(pg_engine)
    assert report.ok, [s.problems for s in report.sessions]
