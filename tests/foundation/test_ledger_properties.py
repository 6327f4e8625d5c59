"""Property: any sequence of ledger operations keeps the invariants, checked after every step in Decimal."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from chalicelib import ledger
from chalicelib.db.models import AccountBalance, Position, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify

OWNER = Actor("owner")
cents = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("50000"), places=8)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), cents),
        st.tuples(st.just("withdraw"), cents),
        st.tuples(st.just("set"), cents),
        st.tuples(st.just("open"), cents),
        st.tuples(st.just("close"), st.decimals(min_value=Decimal("-500"), max_value=Decimal("500"), places=8)),
        st.tuples(st.just("reset"), cents),
    ),
    min_size=1,
    max_size=12,
)
_names = itertools.count()


def _apply(db, session: TradingSession, op: str, amount: Decimal, step: int) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    if op == "deposit":
        ledger.record_deposit(db, session, amount, reason="deposit", actor=OWNER)
    elif op == "withdraw":
        ledger.record_withdrawal(db, session, amount, reason="withdraw", actor=OWNER)
    elif op == "set":
        ledger.record_manual_set(db, session, amount, reason="set", actor=OWNER)
    elif op == "reset":
        ledger.record_reset(db, session, amount, reason="reset", actor=OWNER)
    elif op == "open":
        pos = Position(session_id=session.id, symbol="BTCUSDT", side="long", status="open",
                       entry_price=Decimal("100"), quantity=Decimal("1"), cost=amount, entry_time=now,
                       fees=Decimal("0"))
        db.add(pos)
        db.flush()
        ledger.record_position_opened(db, session, cost=amount, fee=(amount / 1000).quantize(Decimal("1e-8")),
                                      reference=f"position:{pos.id}:open")
    elif op == "close":
        pos = db.execute(select(Position).where(Position.session_id == session.id, Position.status == "open")
                         .limit(1)).scalar_one_or_none()
        if pos is None:
            raise ledger.InvalidChange("nothing to close")
        pos.status = "closed"
        ledger.record_trade_pnl(db, session, pnl=max(amount, -pos.cost), released_cost=pos.cost,
                                reference=f"trade:{pos.id}:pnl")


def _model_total(db, sid: int) -> Decimal:  # type: ignore[no-untyped-def]
    deltas = db.execute(select(AccountBalance.delta).where(AccountBalance.session_id == sid)).scalars()
    return sum(deltas, Decimal(0))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_random_ledger_operations_keep_every_invariant(engine: Engine, sequence: list[tuple[str, Decimal]]) -> None:
    with write_transaction(engine) as db:
        sid = ledger.start_session(db, strategy=f"prop{next(_names)}", symbol="BTCUSDT", timeframe="1h",
                                   exchange="binance", mode="paper", initial_balance=Decimal("10000")).id
    for step, (op, amount) in enumerate(sequence):
        with read_transaction(engine) as db:
            before = db.get(TradingSession, sid)
            assert before is not None
            before_total, before_rows = before.total_balance, ledger.count_entries(db, sid)
        refused = False
        try:
            with write_transaction(engine) as db:
                session = ledger.lock_session(db, sid)
                assert session is not None
                _apply(db, session, op, amount, step)
        except ledger.LedgerError:
            refused = True
        with read_transaction(engine) as db:
            session = db.get(TradingSession, sid)
            assert session is not None
            assert isinstance(session.total_balance, Decimal)
            assert session.total_balance == _model_total(db, sid)
            assert session.available_balance == session.total_balance - session.reserved_balance
            assert session.available_balance >= 0 and session.reserved_balance >= 0
            open_cost = sum(db.execute(select(Position.cost).where(Position.session_id == sid,
                                                                   Position.status == "open")).scalars(), Decimal(0))
            assert session.reserved_balance == open_cost
            rows = ledger.count_entries(db, sid)
            if refused:  # a refused change writes nothing
                assert (session.total_balance, rows) == (before_total, before_rows)
            elif op != "close" or rows > before_rows:
                assert rows == before_rows + 1
    assert verify(engine).ok
