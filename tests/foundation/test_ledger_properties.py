"""Property: any sequence of ledger operations keeps the invariants, checked after every step in Decimal."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from decimal import Decimal

import ledger_testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from chalicelib import accounting, ledger
from chalicelib.db.models import AccountBalance, Position, TickLog, TradingSession
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
        st.tuples(st.just("mark"), st.decimals(min_value=Decimal("1"), max_value=Decimal("1000"), places=2)),
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
        fee = (amount / 1000).quantize(Decimal("1e-8"))
        pos = Position(session_id=session.id, symbol="BTCUSDT", side="long", status="open",
                       entry_price=Decimal("100"), quantity=amount / 100, cost=amount, entry_time=now, fees=fee)
        db.add(pos)
        db.flush()
        ledger_testing.record_position_opened(db, session, cost=amount, fee=fee, reference=f"position:{pos.id}:open")
    elif op == "close":
        pos = db.execute(select(Position).where(Position.session_id == session.id, Position.status == "open")
                         .limit(1)).scalar_one_or_none()
        if pos is None:
            raise ledger.InvalidChange("nothing to close")
        pos.status = "closed"
        ledger_testing.record_position_closed(db, session, position_id=pos.id, pnl=max(amount, -pos.cost),
                                      exit_fee=Decimal(0), released_cost=pos.cost)
    elif op == "mark":  # a candle closed at ``amount``: open positions are marked there (no ledger row)
        book = ledger.Batch(db, session)
        marks = ledger_testing.marks_at(session, amount, now)
        equity = ledger.equity_of(session, ledger.open_positions(db, session.id), marks)
        book.mark(marks=marks, equity=equity, market_time=now)
        book.write()
        db.add(TickLog(session_id=session.id, symbol=session.symbol,
                       candle_time=now, close_price=amount, decision="hold", processed_at=now,
                       market_time=now, equity=equity, units=session.units, unit_value=session.unit_value,
                       performance_index=ledger.unit_state(session).performance_index,
                       ledger_version=session.version))


def _model_total(db, sid: int) -> Decimal:  # type: ignore[no-untyped-def]
    deltas = db.execute(select(AccountBalance.delta).where(AccountBalance.session_id == sid)).scalars()
    return sum(deltas, Decimal(0))


@settings(max_examples=int(os.environ.get("ATB_PROPERTY_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_random_ledger_operations_keep_every_invariant(engine: Engine, sequence: list[tuple[str, Decimal]]) -> None:
    with write_transaction(engine) as db:
        sid = ledger.start_session(db, strategy="prop", symbol="BTCUSDT", timeframe="1h",
                                   exchange=f"exchange{next(_names)}", mode="paper",
                                   initial_balance=Decimal("10000")).id
    for step, (op, amount) in enumerate(sequence):
        with read_transaction(engine) as db:
            before = db.get(TradingSession, sid)
            assert before is not None
            before_total, before_rows = before.total_balance, _count(db, sid)
            before_units = ledger.unit_state(before)
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
            rows = _count(db, sid)
            if refused:  # a refused change writes nothing
                assert (session.total_balance, rows) == (before_total, before_rows)
            elif op == "close":
                assert rows == before_rows + 2  # the exit fee (releasing the cost), then the P&L
            elif op != "mark":
                assert rows == before_rows + 1
            # Units × value per unit reproduce the equity (cash + positions at the last mark) exactly.
            after = ledger.unit_state(session)
            positions = ledger.open_positions(db, sid)
            assert accounting.units_reproduce_equity(after, ledger.equity_of(session, positions))
            if op in ("deposit", "withdraw", "set") and not refused:
                # A capital flow never moves performance: the index (TWR), and while the account holds units
                # the value per unit, its peak and so the drawdown, are exactly what they were.
                assert after.performance_index == before_units.performance_index
                if before_units.units > 0 and before_units.unit_value > 0 and after.units > 0:
                    assert (after.unit_value, after.peak_unit_value, after.drawdown) == (
                        before_units.unit_value, before_units.peak_unit_value, before_units.drawdown)
    report = verify(engine)
    assert report.ok, [s.problems for s in report.sessions if s.problems]


def _count(db, sid: int) -> int:  # type: ignore[no-untyped-def]
    return int(db.execute(select(func.count()).where(AccountBalance.session_id == sid)).scalar_one())
