"""The ledger refuses on its own, whatever the caller checked first: every refusal writes nothing.

The API and the CLI refuse these inputs before the ledger sees them; these tests call the ledger directly so that
its own rules are pinned too (a caller added later gets the same protection)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select

from chalicelib import ledger
from chalicelib.db.migrate import downgrade
from chalicelib.db.models import AccountBalance, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify

OWNER = Actor("owner")


def _account(engine: Engine) -> int:
    with write_transaction(engine) as db:
        return ledger.start_session(db, strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h",
                                    exchange="binance", mode="paper", initial_balance=Decimal(1000)).id


def _state(engine: Engine, sid: int) -> tuple[int, Decimal, int]:
    with read_transaction(engine) as db:
        s = db.get(TradingSession, sid)
        assert s is not None
        rows = db.execute(select(func.count()).where(AccountBalance.session_id == sid)).scalar_one()
        return rows, s.total_balance, s.version


REFUSALS = {
    "nine decimal places": (lambda db, s: ledger.post(db, s, kind="trade_pnl", delta=Decimal("0.000000001"),
                                                      reason="r", reference="trade:1:pnl"), "8 decimal places"),
    "reserved below zero": (lambda db, s: ledger.post(db, s, kind="fee", delta=Decimal(0),
                                                      reserved_delta=Decimal(-1), reason="r"), "reserved"),
    "a zero deposit": (lambda db, s: ledger.record_deposit(db, s, Decimal(0), reason="r", actor=OWNER),
                       "^a deposit must be greater than zero$"),
    "a negative deposit": (lambda db, s: ledger.record_deposit(db, s, Decimal(-5), reason="r", actor=OWNER),
                           "^a deposit must be greater than zero$"),
    "a zero withdrawal": (lambda db, s: ledger.record_withdrawal(db, s, Decimal(0), reason="r", actor=OWNER),
                          "^a withdrawal must be greater than zero$"),
    "a negative withdrawal": (lambda db, s: ledger.record_withdrawal(db, s, Decimal(-5), reason="r", actor=OWNER),
                              "^a withdrawal must be greater than zero$"),
    "a withdrawal of more than there is": (
        lambda db, s: ledger.record_withdrawal(db, s, Decimal("1000.01"), reason="r", actor=OWNER),
        r"available balance would be -\$0\.01"),
    "a negative set": (lambda db, s: ledger.record_manual_set(db, s, Decimal(-1), reason="r", actor=OWNER),
                       "^balance must not be negative$"),
    "a negative reset": (lambda db, s: ledger.record_reset(db, s, Decimal("-0.01"), reason="r", actor=OWNER),
                         "^balance must not be negative$"),
    "a money kind recorded as an event": (
        lambda db, s: ledger.record_event(db, s, "deposit", reason="r", actor=OWNER),
        "^'deposit' is not an event kind$"),
    "a blank reason": (lambda db, s: ledger.record_deposit(db, s, Decimal(1), reason="   ", actor=OWNER),
                       "reason must not be empty"),
    "a 201-character reason": (lambda db, s: ledger.record_deposit(db, s, Decimal(1), reason="x" * 201, actor=OWNER),
                               "longer than 200"),
    "a blank name": (lambda db, s: ledger.record_deposit(db, s, Decimal(1), reason="r", actor=Actor(" ")),
                     "updated_by must not be empty"),
    "a 101-character name": (lambda db, s: ledger.record_deposit(db, s, Decimal(1), reason="r", actor=Actor("n" * 101)),
                             "longer than 100"),
    "an event that moves money": (lambda db, s: ledger.post(db, s, kind="strategy_switch", delta=Decimal(1),
                                                            reason="r"), "moves no money"),
    "an unknown kind": (lambda db, s: ledger.post(db, s, kind="bonus", delta=Decimal(1), reason="r"),
                        "unknown ledger kind"),
}


@pytest.mark.parametrize("what", list(REFUSALS))
def test_the_ledger_refuses_and_writes_nothing(engine: Engine, what: str) -> None:
    sid = _account(engine)
    before = _state(engine, sid)
    change, message = REFUSALS[what]
    with pytest.raises(ledger.LedgerError, match=message), write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        change(db, session)
    assert _state(engine, sid) == before


def test_a_200_character_reason_and_a_100_character_name_are_accepted(engine: Engine) -> None:
    sid = _account(engine)
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, sid)
        assert session is not None
        row = ledger.record_deposit(db, session, Decimal(1), reason="x" * 200, actor=Actor("n" * 100))
    assert (len(row.update_reason), len(row.updated_by)) == (200, 100)


def test_verify_reports_an_account_without_ledger_rows(engine: Engine) -> None:
    with write_transaction(engine) as db:
        session = TradingSession(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="binance",
                                 mode="paper", status="active", initial_balance=Decimal(0),
                                 started_at=utcnow())
        db.add(session)
    [account] = verify(engine).sessions
    assert account.problems == ["no ledger rows: the account has no recorded starting capital"]


def test_verify_on_a_database_behind_the_newest_schema_says_so(engine: Engine) -> None:
    downgrade(engine, "0002")
    report = verify(engine)
    assert not report.ok and report.schema.current == "0002" and report.sessions == []


@pytest.mark.parametrize(("mode", "capital", "message"), [
    ("paper", Decimal("-0.01"), "^initial balance must not be negative$"),
    ("demo", Decimal(1000), "^mode must be paper or live, not 'demo'$"),
])
def test_an_account_cannot_start_with_negative_capital_or_an_unknown_mode(engine: Engine, mode: str,
                                                                          capital: Decimal, message: str) -> None:
    with pytest.raises(ledger.InvalidChange, match=message), write_transaction(engine) as db:
        ledger.start_session(db, strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="binance",
                             mode=mode, initial_balance=capital)
    with read_transaction(engine) as db:
        assert db.execute(select(func.count()).select_from(TradingSession)).scalar_one() == 0


@pytest.mark.parametrize("op", ["set", "deposit", "withdraw"])
def test_a_balance_change_on_an_account_that_does_not_exist_names_it_and_writes_nothing(engine: Engine,
                                                                                        op: str) -> None:
    # the use case behind POST /api/balance?session_id=… (a 404) and `atb balance … --session`: the message
    # the user reads is the lock's, word for word
    from chalicelib.balances import change_balance

    sid = _account(engine)
    before = _state(engine, sid)
    with pytest.raises(ledger.SessionNotFound) as refused:
        change_balance(op, Decimal(5), reason="r", actor=OWNER, session_id=sid + 1, engine=engine)  # type: ignore[arg-type]
    assert str(refused.value) == f"no trading session #{sid + 1}"
    assert _state(engine, sid) == before
