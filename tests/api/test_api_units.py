"""Capital flows apart from performance, worked by hand (ACCOUNTING.md's example, through GET /api/balance).

1,000 → a trade makes +10 % → deposit 1,100 → a trade makes −5 % → withdraw 500:

| step          | flow   | equity | units                     | value/unit | TWR    | drawdown |
|---------------|--------|--------|---------------------------|------------|--------|----------|
| start         | +1,000 | 1,000  | 1,000                     | 1          | 0      | 0        |
| trade +10 %   |        | 1,100  | 1,000                     | 1.1        | +10 %  | 0        |
| deposit 1,100 | +1,100 | 2,200  | 2,000 (1,100 / 1.1)       | 1.1        | +10 %  | 0        |
| trade −5 %    |        | 2,090  | 2,000                     | 1.045      | +4.5 % | 5 %      |
| withdraw 500  | −500   | 1,590  | 1,521.531100478468899522  | 1.045      | +4.5 % | 5 %      |

500 / 1.045 = 478.468899521531100478(4…) units redeemed, to 18 places. Over the whole run the plain change is
+590 = net flows +600 + P&L −10 (+100 − 110), and the money-weighted P&L is 1,590 − 1,600 = −10.
The last 24 market hours start after the +10 % trade: performance 1.045 / 1.1 − 1 = −5 %, plain change 1,590 −
1,100 = +490 = flows +600 (1,100 − 500) + P&L −110.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import ledger_testing
from api_helpers import READ_TOKEN, auth
from chalice.test import Client
from sqlalchemy import Engine, select

from chalicelib import ledger
from chalicelib.db.models import AccountBalance, Position, Trade
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.jsonutil import loads_exact
from chalicelib.verify import verify

OWNER = ledger.Actor("owner")


def _round_trip(engine: Engine, sid: int, quantity: str, entry: str, exit_: str, when) -> None:  # type: ignore[no-untyped-def]
    """Open and close a long at these prices, no fees, through the ledger (as the tick books it)."""
    qty, entry_price, exit_price = Decimal(quantity), Decimal(entry), Decimal(exit_)
    cost, pnl = qty * entry_price, (exit_price - entry_price) * qty
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        position = Position(session_id=sid, symbol="BTCUSDT", side="long", status="open", entry_price=entry_price,
                            quantity=qty, cost=cost, entry_time=when, fees=Decimal(0))
        db.add(position)
        db.flush()
        ledger_testing.record_position_opened(db, session, cost=cost, fee=Decimal(0),
                                      reference=ledger.position_reference(position.id), now=when)
        position.status, position.exit_price, position.exit_time = "closed", exit_price, when
        position.exit_reason, position.realized_pnl = "take_profit" if pnl > 0 else "stop_loss", pnl
        db.add(Trade(session_id=sid, position_id=position.id, symbol="BTCUSDT", side="long", entry_price=entry_price,
                     exit_price=exit_price, quantity=qty, entry_time=when, exit_time=when, realized_pnl=pnl,
                     fees=Decimal(0), exit_reason=position.exit_reason, market_time=when, recorded_at=when))
        db.flush()
        ledger_testing.record_position_closed(db, session, position_id=position.id, pnl=pnl, exit_fee=Decimal(0),
                                      released_cost=cost, exit_reason=position.exit_reason, now=when)


def test_deposits_and_withdrawals_issue_and_redeem_units_and_never_move_performance(
        client: Client, start_session, engine: Engine) -> None:
    now = utcnow()
    sid = start_session("1000", now=now - timedelta(hours=30))
    _round_trip(engine, sid, "5", "100", "120", now - timedelta(hours=26))  # +100 on 1,000: +10 %
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        ledger.record_deposit(db, session, Decimal(1100), reason="more capital", actor=OWNER,
                              now=now - timedelta(hours=20))
    _round_trip(engine, sid, "10", "100", "89", now - timedelta(hours=10))  # −110 on 2,200: −5 %
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        ledger.record_withdrawal(db, session, Decimal(500), reason="rent", actor=OWNER, now=now - timedelta(hours=1))

    with read_transaction(engine) as db:
        rows = list(db.execute(select(AccountBalance).where(AccountBalance.session_id == sid)
                               .order_by(AccountBalance.id)).scalars())
    after = {r.kind + (f":{r.update_reason}" if r.kind == "trade_pnl" else ""): (r.equity, r.units, r.unit_value)
             for r in rows}
    assert after["initial"] == (Decimal(1000), Decimal(1000), Decimal(1))
    assert after["trade_pnl:trade_pnl_take_profit"] == (Decimal(1100), Decimal(1000), Decimal("1.1"))
    assert after["deposit"] == (Decimal(2200), Decimal(2000), Decimal("1.1"))
    assert after["trade_pnl:trade_pnl_stop_loss"] == (Decimal(2090), Decimal(2000), Decimal("1.045"))
    assert after["withdrawal"] == (Decimal(1590), Decimal("1521.531100478468899522"), Decimal("1.045"))

    response = client.http.get("/api/balance", headers=auth(READ_TOKEN))
    assert response.status_code == 200, response.body
    b = loads_exact(response.body)
    assert b["current_balance"] == b["equity"] == Decimal(1590)
    assert b["time_weighted_return"] == Decimal("0.045")  # +4.5 % since the start, flows excluded
    assert b["drawdown"] == Decimal("0.05")  # 1 − 1.045 / 1.1
    assert (b["unit_value"], b["peak_unit_value"]) == (Decimal("1.045"), Decimal("1.1"))
    assert b["units"] == Decimal("1521.531100478468899522")
    assert b["total_pnl"] == Decimal(-10)  # 1,590 − (1,000 + 1,100 − 500)
    # The last 24 market hours began after the +10 % trade.
    assert b["balance_24h_ago"] == Decimal(1100)
    assert b["balance_change_24h"] == Decimal("-5.00")
    assert (b["balance_delta_24h"], b["net_flows_24h"], b["pnl_24h"]) == (Decimal(490), Decimal(600), Decimal(-110))
    assert (b["realized_pnl_24h"], b["fees_24h"]) == (Decimal(-110), Decimal(0))
    assert verify(engine).ok


def test_a_positions_unrealised_pnl_is_the_accounts_formula_so_the_figures_add_up() -> None:
    """GET /api/positions and GET /api/balance compute unrealised P&L with one formula (marked value − cost): with
    one position open, the position's figure is the account's (equity − total balance). The per-position copy
    used (close − entry) × quantity and was one hundred-millionth off here."""
    from chalicelib import ledger
    from chalicelib.api.schemas import PositionOut
    from chalicelib.db.models import Position
    from chalicelib.db.types import utcnow
    from chalicelib.money import quantize_money
    from chalicelib.valuation import Mark

    entry, quantity, close = Decimal("7914.17863492"), Decimal("0.30703946"), Decimal("9882.81540384")
    position = Position(id=1, session_id=1, symbol="BTCUSDT", side="long", status="open", entry_price=entry,
                        quantity=quantity, cost=quantize_money(entry * quantity), stop_loss=None, take_profit=None,
                        entry_time=utcnow(), exit_price=None, exit_time=None, exit_reason=None, realized_pnl=None,
                        fees=Decimal(0))
    mark = Mark(close, utcnow())
    account_unrealised = ledger.marked_value([position], {"BTCUSDT": mark}) - position.cost  # BalanceResponse's
    assert PositionOut.of(position, mark).unrealized_pnl == account_unrealised == Decimal("604.44917046")
