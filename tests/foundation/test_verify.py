"""`atb db verify` names the session and the invariant a hand-broken database violates."""

from __future__ import annotations

from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from chalicelib import ledger
from chalicelib.balances import change_balance
from chalicelib.cli import main
from chalicelib.db.uow import write_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify


def _two_sessions(engine: Engine) -> tuple[int, int]:
    with write_transaction(engine) as db:
        a = ledger.start_session(db, strategy="a", symbol="BTCUSDT", timeframe="1h", exchange="x", mode="paper",
                                 initial_balance=Decimal("1000")).id
        b = ledger.start_session(db, strategy="b", symbol="BTCUSDT", timeframe="1h", exchange="y", mode="paper",
                                 initial_balance=Decimal("500")).id
    change_balance("deposit", Decimal("10"), reason="r", actor=Actor("o"), session_id=b, engine=engine)
    return a, b


BREAKAGES = {
    "a ledger row's balance": (
        "UPDATE account_balances SET total_balance = '509.00000000', available_balance = '509.00000000' "
        "WHERE id = (SELECT max(id) FROM account_balances)",
        "balance after is 509.00 but the row before (500.00) plus this row's amount (10.00) is 510.00",
    ),
    "the cached balance": (
        "UPDATE trading_sessions SET total_balance = '600.00000000', available_balance = '600.00000000' WHERE id = 2",
        "cached total balance 600.00 ≠ latest ledger row",
    ),
    "the reserved balance": (
        "UPDATE trading_sessions SET reserved_balance = '10.00000000', available_balance = '500.00000000' "
        "WHERE id = 2",
        "reserved 10.00 ≠ cost of open positions 0.00",
    ),
    "a deleted ledger row": (
        "DELETE FROM account_balances WHERE id = (SELECT max(id) FROM account_balances)",
        "cached total balance 510.00 ≠ latest ledger row",
    ),
}


@pytest.mark.parametrize("what", list(BREAKAGES))
def test_verify_names_the_broken_session_and_invariant(engine: Engine, what: str) -> None:
    a, b = _two_sessions(engine)
    assert verify(engine).ok
    statement, message = BREAKAGES[what]
    with engine.begin() as conn:
        conn.execute(text(statement))
    report = verify(engine)
    assert not report.ok
    by_id = {s.session_id: s for s in report.sessions}
    assert by_id[a].ok  # the healthy session is reported healthy
    assert any(message in p for p in by_id[b].problems), by_id[b].problems

    result = CliRunner().invoke(main, ["db", "verify"])
    assert result.exit_code == 1
    assert f"session #{b} b BTCUSDT 1h paper (active): FAILED" in result.stdout and message in result.stdout
    assert "verify: FAILED" in result.stdout


def test_an_account_recovered_from_its_trades_verifies_from_its_migration_row(engine: Engine) -> None:
    """An account from before the ledger opens with migration 0002's row, which cites the migration."""
    from chalicelib.db.models import TradingSession
    from chalicelib.db.types import utcnow

    with write_transaction(engine) as db:
        session = TradingSession(strategy="a", symbol="BTCUSDT", timeframe="1h", exchange="x", mode="paper",
                                 status="active", initial_balance=Decimal(1000), started_at=utcnow())
        db.add(session)
        db.flush()
        ledger.post(db, session, kind="recovered_from_trades", delta=Decimal("1042.5"), reason="recovered",
                    reference="migration:0002", held={}, positions_value=Decimal(0))
    change_balance("deposit", Decimal("10"), reason="r", actor=Actor("o"), session_id=session.id, engine=engine)
    report = verify(engine)
    assert report.ok, report.sessions[0].problems
