"""`atb bots` and `atb schedules` (issue 14): add, list, pause, resume, remove; bad input is one `error:` line,
exit 2, and nothing changes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from chalicelib import fleet
from chalicelib.cli import main
from chalicelib.db.engine import get_engine


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_a_bot_is_added_paused_resumed_and_removed(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_OPERATOR", "alice")
    code, out, _ = run("bots", "add", "ml_basic", "--symbol", "eth/usdt", "--exchange", "BinanceUS",
                       "--initial-capital", "2500.50")
    assert code == 0 and "#1 ml_basic ETHUSDT 1h binanceus active" in out and "$2,500.50" in out
    code, out, _ = run("bots", "list", "--json")
    [bot] = json.loads(out)
    assert (bot["created_by"], bot["status"], bot["session_id"]) == ("alice", "active", None)
    assert run("bots", "pause", "1")[1].startswith("Paused bot #1")
    assert fleet.list_bots(get_engine(database_url))[0].status == "paused"
    assert run("bots", "resume", "1")[1].startswith("Resumed bot #1")
    assert run("bots", "remove", "1")[0] == 0
    assert run("bots", "list")[1].startswith("No bots")


BAD = [
    (["bots", "add", "nosuch", "--symbol", "BTCUSDT"], "unknown strategy 'nosuch'"),
    (["bots", "add", "ml_basic", "--symbol", "ETHBTC"], "not USD"),
    (["bots", "add", "ml_basic", "--symbol", "BTCUSDT", "--timeframe", "7x"], "unsupported timeframe"),
    (["bots", "add", "ml_basic", "--symbol", "BTCUSDT", "--initial-capital", "0"], "greater than zero"),
    (["bots", "add", "ml_basic", "--symbol", "BTCUSDT", "--initial-capital", "1e9999"], "initial capital"),
    (["bots", "add", "ma_crossover", "--symbol", "BTC/USDT"], "already trades BTCUSDT"),
    (["bots", "pause", "99"], "no bot #99"),
    (["bots", "remove", "0"], "0"),
    (["schedules", "add", "--amount", "100", "--every", "1y", "--reason", "x"], "--every"),
    (["schedules", "add", "--amount", "-5", "--every", "1w", "--reason", "x"], "amount"),
    (["schedules", "add", "--amount", "100", "--every", "1w"], "--reason"),
]


@pytest.mark.parametrize(("args", "says"), BAD)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(database_url: str, args: list[str], says: str) -> None:
    assert run("bots", "add", "ml_basic", "--symbol", "BTCUSDT")[0] == 0
    assert run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT")[0] == 0
    engine = get_engine(database_url)
    before = (fleet.list_bots(engine), fleet.list_schedules(engine))
    code, _, err = run(*args)
    assert code == 2 and err.startswith("error: ") and says in err and len(err.strip().splitlines()) == 1, err
    assert (fleet.list_bots(engine), fleet.list_schedules(engine)) == before


def test_a_schedule_is_added_and_listed(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_OPERATOR", "bob")
    assert run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT")[0] == 0
    code, out, _ = run("schedules", "add", "--amount", "100", "--every", "1w", "--reason", "weekly savings")
    assert code == 0 and "deposit $100.00 every 1w into session #1" in out
    [schedule] = json.loads(run("schedules", "list", "--json")[1])
    assert (schedule["created_by"], schedule["amount"], schedule["every"]) == ("bob", 100, "1w")
