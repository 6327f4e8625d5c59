"""The 24 h figures: ``balance_change_24h`` is performance (capital flows excluded), and the plain change in equity
is split into net flows and P&L. The window is the last 24 market hours; a younger account compares with its start.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from api_helpers import READ_TOKEN, auth
from chalice.test import Client
from sqlalchemy import Engine

from chalicelib import ledger
from chalicelib.db.types import utcnow
from chalicelib.db.uow import write_transaction
from chalicelib.jsonutil import loads_exact

OPERATOR = ledger.Actor("test")


def _balance(client: Client) -> dict:
    response = client.http.get("/api/balance", headers=auth(READ_TOKEN))
    assert response.status_code == 200, response.body
    return loads_exact(response.body)


def _deposits(engine: Engine, session_id: int, amounts_and_ages: list[tuple[str, timedelta]]) -> None:
    now = utcnow()
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, session_id)
        assert session is not None
        for amount, age in amounts_and_ages:
            ledger.record_deposit(db, session, Decimal(amount), reason="deposit", actor=OPERATOR, now=now - age)


def _old_session(start_session, engine: Engine) -> int:
    """Started three days ago with 1000; a deposit of 100 two days ago: 1100 in force 24 hours ago."""
    session_id = start_session("1000", now=utcnow() - timedelta(days=3))
    _deposits(engine, session_id, [("100", timedelta(days=2))])
    return session_id


def test_no_change_in_the_last_24_hours_is_zero_percent(client: Client, start_session, engine: Engine) -> None:
    _old_session(start_session, engine)
    summary = _balance(client)
    assert summary["balance_24h_ago"] == Decimal(1100)
    assert summary["balance_change_24h"] == Decimal("0.00")
    assert (summary["balance_delta_24h"], summary["net_flows_24h"], summary["pnl_24h"]) == (0, 0, 0)


def test_one_change_in_the_last_24_hours(client: Client, start_session, engine: Engine) -> None:
    session_id = _old_session(start_session, engine)
    _deposits(engine, session_id, [("110", timedelta(hours=1))])
    summary = _balance(client)
    assert summary["current_balance"] == Decimal(1210)
    # A deposit is not performance: 0 %, and the 110 shows as a flow.
    assert summary["balance_change_24h"] == Decimal("0.00")
    assert (summary["balance_delta_24h"], summary["net_flows_24h"], summary["pnl_24h"]) == (110, 110, 0)


def test_500_changes_in_the_last_24_hours_compare_with_the_balance_in_force_24_hours_ago(
        client: Client, start_session, engine: Engine) -> None:
    session_id = _old_session(start_session, engine)
    # 500 deposits of 1 spread over the last 23 hours (oldest first), and one just over 24 hours ago.
    _deposits(engine, session_id, [("5", timedelta(hours=24, minutes=1))])
    _deposits(engine, session_id, [("1", timedelta(minutes=2 * (500 - i) + 30)) for i in range(500)])
    summary = _balance(client)
    assert summary["balance_24h_ago"] == Decimal(1105)
    assert summary["current_balance"] == Decimal(1605)
    assert summary["balance_change_24h"] == Decimal("0.00")  # 500 deposits, no trading: no performance
    assert (summary["balance_delta_24h"], summary["net_flows_24h"], summary["pnl_24h"]) == (500, 500, 0)
    assert len(summary["recent_history"]) == 5


def test_a_session_younger_than_24_hours_reports_the_change_since_its_start(
        client: Client, start_session, engine: Engine) -> None:
    session_id = start_session("2000", now=utcnow() - timedelta(hours=2))
    _deposits(engine, session_id, [("500", timedelta(hours=1))])
    summary = _balance(client)
    assert summary["balance_24h_ago"] == Decimal(2000)
    assert summary["balance_change_24h"] == Decimal("0.00")
    assert (summary["balance_delta_24h"], summary["net_flows_24h"]) == (500, 500)


def test_an_account_that_started_with_nothing_starts_its_units_with_the_first_deposit(
        client: Client, start_session, engine: Engine) -> None:
    session_id = start_session("0", now=utcnow() - timedelta(hours=2))
    _deposits(engine, session_id, [("500", timedelta(hours=1))])
    summary = _balance(client)
    assert summary["balance_change_24h"] == Decimal("0.00") and summary["time_weighted_return"] == 0
    assert (summary["units"], summary["unit_value"], summary["net_flows_24h"]) == (500, 1, 500)
