"""One way in through the command line: `atb sessions start`, `atb live` and `atb backtest` build the same
validated bot, so a bad definition is one `error:` line, exit 2 and nothing written — and a bot that already
exists is found, not duplicated, whatever spelling of its symbol is used."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from chalicelib.cli import main
from chalicelib.db.engine import get_engine
from chalicelib.db.models import AccountBalance, TradingSession
from chalicelib.db.uow import read_transaction

ROOT = Path(__file__).resolve().parents[2]

BAD_DEFINITIONS = [
    ("nosuch", "BTCUSDT", "1h", "unknown strategy 'nosuch' (available: ma_crossover, ml_basic)"),
    ("ml_basic", "BTCUSDT", "7x", "unsupported timeframe '7x'"),
    ("ml_basic", "ETHBTC", "1h",
     "ETHBTC is quoted in BTC, which is not USD: add a BTC/USD pair (like BTCUSDT)"),
    ("ml_basic", "???", "1h", "cannot read symbol '???'"),
]


def _command(path: str, strategy: str, symbol: str, timeframe: str) -> list[str]:
    bot = [strategy, "--symbol", symbol, "--timeframe", timeframe]
    if path == "live":
        return ["live", *bot, "--paper-trading", "--feed", "replay", "--ticks", "1"]
    if path == "live-exchange":
        return ["live", *bot, "--paper-trading"]  # the default feed: the exchange (never reached)
    if path == "sessions start":
        return ["sessions", "start", *bot]
    return ["backtest", *bot, "--days", "1"]


PATHS = ["live", "live-exchange", "sessions start", "backtest"]
CASES = [(p, *d) for p in PATHS for d in BAD_DEFINITIONS]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def everything(url: str) -> tuple[list[tuple], list[tuple]]:
    with read_transaction(get_engine(url)) as db:
        sessions = [(s.id, s.strategy, s.symbol, s.timeframe, s.exchange, s.status, s.total_balance, s.version)
                    for s in db.execute(select(TradingSession).order_by(TradingSession.id)).scalars()]
        ledger = [(r.id, r.session_id, r.kind, r.delta, r.total_balance)
                  for r in db.execute(select(AccountBalance).order_by(AccountBalance.id)).scalars()]
    return sessions, ledger


@pytest.mark.parametrize(("path", "strategy", "symbol", "timeframe", "message"), CASES,
                         ids=[f"{c[0]}: {c[1]} {c[2]} {c[3]}" for c in CASES])
def test_a_bad_bot_definition_on_a_fresh_directory_is_one_error_line_exit_2_and_creates_no_file(
    tmp_path: Path, path: str, strategy: str, symbol: str, timeframe: str, message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_SECRET_ARN")}
    env.update(PYTHONPATH=str(ROOT), HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "chalicelib.cli", *_command(path, strategy, symbol, timeframe)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_bad_bot_definitions_write_no_session_and_no_ledger_row_in_an_existing_database(database_url: str) -> None:
    assert run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT", "--exchange", "replay")[0] == 0
    before = everything(database_url)
    for path, strategy, symbol, timeframe, message in CASES:
        code, out, err = run(*_command(path, strategy, symbol, timeframe))
        assert (code, out) == (2, ""), (path, symbol, err)
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert everything(database_url) == before


def test_sessions_start_stores_the_symbol_as_every_other_path_and_finds_an_existing_bot(database_url: str) -> None:
    code, out, _ = run("sessions", "start", "ml_basic", "--symbol", "btc/usdt", "--initial-balance", "500")
    assert code == 0 and out.strip() == "Started session #1: ml_basic BTCUSDT 1h paper, initial balance $500.00"
    assert everything(database_url)[0][0][2] == "BTCUSDT"  # not "BTC/USDT"

    code, out, _ = run("sessions", "start", "ml_basic", "--symbol", "BTC-USDT")
    assert code == 0
    assert out.strip() == "Session #1 (ml_basic BTCUSDT 1h paper) already exists with balance $500.00: nothing started"
    assert len(everything(database_url)[0]) == 1


def test_an_explicit_initial_balance_for_an_existing_bot_is_said_to_be_ignored_and_why(database_url: str) -> None:
    assert run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT", "--initial-balance", "500")[0] == 0
    before = everything(database_url)
    code, out, _ = run("sessions", "start", "ml_basic", "--symbol", "BTCUSDT", "--initial-balance", "20000")
    assert code == 0
    assert ("--initial-balance ignored: account #1 already exists with $500.00; --initial-balance applies only "
            "to a new account") in out.splitlines()
    assert everything(database_url) == before


def test_sessions_start_json_describes_the_bot_it_started_or_found(database_url: str) -> None:
    code, out, _ = run("sessions", "start", "ma_crossover", "--symbol", "ETH_USDT", "--json")
    assert code == 0 and json.loads(out)["symbol"] == "ETHUSDT"
    code, again, _ = run("sessions", "start", "ma_crossover", "--symbol", "ETHUSDT", "--json")
    assert code == 0 and json.loads(again)["session_id"] == json.loads(out)["session_id"]


def test_switch_strategy_prints_no_json_log_lines(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}

    def atb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chalicelib.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    assert atb("sessions", "start", "ml_basic", "--symbol", "BTCUSDT").returncode == 0
    switched = atb("switch-strategy", "ma_crossover")
    assert switched.returncode == 0, switched.stderr
    assert switched.stdout.startswith("Session #1 switched from ml_basic to ma_crossover: the same account, "
                                      "recorded in its ledger\n")
    assert not [line for line in switched.stdout.splitlines() if line.lstrip().startswith("{")], switched.stdout
    assert "{" not in switched.stderr


def test_live_without_feed_trades_live_exchange_prices_and_says_so_on_its_first_line(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.trading.feeds import CcxtFeed, ReplayFeed

    served = ReplayFeed().all_candles("BTCUSDT", "1h")
    asked: list[str] = []

    def exchange_answers(self: CcxtFeed, symbol: str, timeframe: str, since: Any, limit: int, now: Any) -> Any:
        asked.append(f"{self.exchange_id} {symbol} {timeframe}")
        newer = [c for c in served if since is None or c.open_time > since]
        return newer[:limit] if since is not None else newer[-limit:]

    monkeypatch.setattr(CcxtFeed, "fetch_closed_candles", exchange_answers)
    code, out, err = run("live", "ml_basic", "--symbol", "BTCUSDT", "--paper-trading", "--ticks", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Feed: live binance prices via ccxt"
    assert lines[1] == "Started session #1 (ml_basic BTCUSDT 1h paper) with initial balance $1,000.00"
    assert asked and set(asked) == {"binance BTCUSDT 1h"}
    assert everything(database_url)[0][0][4] == "binance"

    code, out, err = run("live", "ml_basic", "--symbol", "BTC/USDT", "--paper-trading", "--ticks", "1",
                         "--initial-balance", "250")
    assert code == 0, err
    assert out.splitlines()[1] == "Found active session #1 (ml_basic BTCUSDT 1h paper)"
    balance = everything(database_url)[0][0][6]
    assert any(re.fullmatch(r"--initial-balance ignored: account #1 already exists with \$[\d,]+\.\d\d; "
                            r"--initial-balance applies only to a new account", line) for line in out.splitlines())
    assert balance != 250


def test_replay_names_no_exchange(tmp_path: Path) -> None:
    code, _, err = run("live", "ml_basic", "--symbol", "BTCUSDT", "--paper-trading", "--feed", "replay",
                       "--exchange", "kraken")
    assert code == 2 and err.startswith("error: --exchange only applies to --feed exchange")


def test_a_backtest_of_ethusdt_runs_on_the_bundled_eth_candles_and_says_so() -> None:
    from chalicelib.trading.feeds import ReplayFeed

    code, out, err = run("backtest", "ma_crossover", "--symbol", "ETHUSDT", "--days", "10")
    assert code == 0, err
    eth = ReplayFeed(symbol="ETHUSDT").all_candles("ETHUSDT", "1h")[-240:]
    hold = (eth[-1].close - eth[0].close) / eth[0].close * 100
    assert out.startswith("ma_crossover on ETHUSDT 1h: 240 candles")
    assert f"data             replay of bundled ETHUSDT 1h candles ({ROOT / 'chalicelib' / 'data'}" in out
    assert f"(buy and hold {hold:+.2f}%)" in out


def test_a_backtest_of_a_symbol_without_bundled_candles_is_refused_and_data_of_unknown_symbol_is_accepted(
    tmp_path: Path
) -> None:
    code, out, err = run("backtest", "ma_crossover", "--symbol", "SOLUSDT", "--days", "1")
    assert (code, out) == (2, "") and err == "error: no bundled candles for SOLUSDT; pass --data SOLUSDT=FILE\n"

    from chalicelib.trading.feeds import ReplayFeed

    lines = ["timestamp_ms,open,high,low,close,volume"]
    for c in ReplayFeed().all_candles("BTCUSDT", "1h")[:200]:
        lines.append(f"{int(c.open_time.timestamp() * 1000)},{c.open},{c.high},{c.low},{c.close},{c.volume}")
    data = tmp_path / "candles.csv"
    data.write_text("\n".join(lines) + "\n")
    code, out, err = run("backtest", "ma_crossover", "--symbol", "SOLUSDT", "--days", "2", "--data", str(data))
    assert code == 0, err
    assert out.startswith("ma_crossover on SOLUSDT 1h: 48 candles")
    assert f"replay of SOLUSDT 1h candles ({data})" in out

    named = tmp_path / "BTCUSDT_1h.csv"
    named.write_text(data.read_text())
    code, _, err = run("backtest", "ma_crossover", "--symbol", "ETHUSDT", "--data", str(named))
    assert code == 2 and "holds BTCUSDT, not ETHUSDT" in err
