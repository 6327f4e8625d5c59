"""The `atb` command line: migrate/verify/balance on a real database; bad input is refused and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from chalicelib.cli import main
from chalicelib.db.engine import get_engine
from chalicelib.db.models import AccountBalance, TradingSession
from chalicelib.db.uow import read_transaction


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def ledger_snapshot(url: str) -> list[tuple]:
    with read_transaction(get_engine(url)) as db:
        rows = db.execute(select(AccountBalance).order_by(AccountBalance.id)).scalars()
        ledger = [(r.id, r.kind, r.delta, r.total_balance, r.available_balance, r.reserved_balance,
                   r.update_reason, r.updated_by, r.last_updated) for r in rows]
        sessions = [(s.id, s.total_balance, s.available_balance, s.version, s.status)
                    for s in db.execute(select(TradingSession).order_by(TradingSession.id)).scalars()]
    return ledger + sessions  # type: ignore[operator]


def test_migrate_then_verify_succeeds_on_a_fresh_database(empty_database_url: str, db_kind: str) -> None:
    code, out, _ = run("db", "status")
    assert code == 1 and "behind" in out
    code, out, _ = run("db", "migrate")
    from chalicelib.db.migrate import head_revision

    assert code == 0 and f"to {head_revision()} (head)" in out
    code, out, _ = run("db", "verify")
    assert code == 0 and "verify: ok" in out
    code, out, _ = run("db", "status")
    assert code == 0 and "up to date" in out


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def test_balance_commands_record_every_change_with_reason_and_who(database_url: str) -> None:
    assert run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT", "--initial-balance", "1000")[0] == 0
    assert run("balance", "deposit", "250.25", "--reason", "top up")[0] == 0
    assert run("balance", "withdraw", "0.25", "--reason", "fees home")[0] == 0
    code, out, _ = run("balance", "set", "5000", "--reason", "Capital increase")
    assert code == 0 and "$5,000.00" in out
    code, out, _ = run("balance", "show", "--json")
    shown = json.loads(out, parse_float=Decimal)
    assert shown["current_balance"] == Decimal("5000.00") and '"current_balance": 5000.00' in out
    code, out, _ = run("balance", "history", "--json", "--limit", "2")
    entries = json.loads(out, parse_float=Decimal)["entries"]
    assert [e["kind"] for e in entries] == ["manual_set", "withdrawal"]
    assert entries[0]["reason"] == "Capital increase" and entries[0]["amount"] == Decimal("3750")
    assert run("db", "verify")[0] == 0


BAD_INPUTS = [
    (["balance", "deposit", "abc", "--reason", "x"], "not a number"),
    (["balance", "deposit", "NaN", "--reason", "x"], "finite"),
    (["balance", "deposit", "Infinity", "--reason", "x"], "finite"),
    (["balance", "deposit", "-5", "--reason", "x"], "greater than zero"),
    (["balance", "set", "-5", "--reason", "x"], "must not be negative"),
    (["balance", "withdraw", "0", "--reason", "x"], "greater than zero"),
    (["balance", "deposit", "1.123456789", "--reason", "x"], "more than 8 decimal places"),
    (["balance", "deposit", "5", "--reason", ""], "reason must not be empty"),
    (["balance", "deposit", "5", "--reason", "   "], "reason must not be empty"),
    (["balance", "deposit", "5"], "reason must not be empty"),
    (["balance", "set", "5", "--reason", "x", "--session", "999"], "no trading session #999"),
    (["balance", "show", "--session", "999"], "no trading session #999"),
    (["sessions", "start", "x", "--symbol", "BTCUSDT", "--initial-balance", "NaN"], "finite"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gets_a_one_line_error_exit_2_and_changes_nothing(
    database_url: str, args: list[str], message: str
) -> None:
    assert run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT", "--initial-balance", "1000")[0] == 0
    before = ledger_snapshot(database_url)
    code, _, err = run(*args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert ledger_snapshot(database_url) == before


def test_the_sqlite_file_is_left_byte_for_byte_unchanged_by_bad_input(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'atb.sqlite3'}"}

    def atb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chalicelib.cli", *args], env=env, capture_output=True,
                              text=True, check=False)

    assert atb("db", "migrate").returncode == 0
    assert atb("sessions", "start", "ml_basic", "--symbol", "BTCUSDT").returncode == 0
    atb("db", "verify")  # checkpoint WAL so the main file holds everything
    db_file = tmp_path / "atb.sqlite3"
    before = db_file.read_bytes()
    for bad in ("NaN", "-5", "1e400", "abc"):
        result = atb("balance", "deposit", bad, "--reason", "x")
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert db_file.read_bytes() == before


def test_a_refused_withdrawal_exits_1_and_says_why(database_url: str) -> None:
    run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT", "--initial-balance", "100")
    before = ledger_snapshot(database_url)
    code, _, err = run("balance", "withdraw", "100.01", "--reason", "too much")
    assert code == 1 and "available balance would be -$0.01" in err
    assert ledger_snapshot(database_url) == before


def test_several_active_sessions_need_a_session_id(database_url: str) -> None:
    run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT")
    run("sessions", "start", "ma_crossover", "--symbol", "ETHUSDT")
    code, _, err = run("balance", "show")
    assert code == 2 and "several sessions are active" in err and "#1" in err and "#2" in err
    assert run("balance", "show", "--session", "2")[0] == 0
    assert run("sessions", "stop", "--session", "2")[0] == 0
    assert run("balance", "show")[0] == 0
