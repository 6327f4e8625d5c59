"""`atb live` and `atb backtest` as a user runs them: a fresh directory, no DATABASE_URL, no network."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from engine_testing import ROOT

ATB = [sys.executable, "-m", "chalicelib.cli"]
LIVE = [*ATB, "live", "ml_basic", "--symbol", "BTCUSDT", "--paper-trading", "--feed", "replay"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_SECRET_ARN")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_live_replay_works_offline_in_an_empty_directory_and_a_second_run_recovers_and_continues(tmp_path):
    first = _run([*LIVE, "--ticks", "300"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "atb.sqlite3").exists()
    out = first.stdout
    bundled = ROOT / "chalicelib" / "data" / "BTCUSDT_1h.csv.gz"
    assert out.splitlines()[0] == f"Feed: replay of bundled BTCUSDT 1h candles ({bundled})"
    assert "Started session #1 (ml_basic BTCUSDT 1h paper) with initial balance $1,000.00" in out
    assert re.search(r"^2023-01-01T00:00:00Z  close +\$16,", out, re.M)
    assert "Stopped after 300 tick(s): session #1" in out
    last_candle = re.search(r"last candle (\S+)", out)
    assert last_candle is not None and last_candle.group(1) == "2023-01-13T11:00Z"

    second = _run([*LIVE, "--ticks", "5"], tmp_path)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()[1:]  # after the feed line
    assert lines[0] == "Found active session #1 (ml_basic BTCUSDT 1h paper)"
    assert lines[1].startswith("Recovered balance for session #1: $")
    assert "Next candle after 2023-01-13T11:00:00Z" in second.stdout
    assert re.search(r"^2023-01-13T12:00:00Z  close", second.stdout, re.M)  # carries on with the next candle
    verify = _run([*ATB, "db", "verify"], tmp_path)
    assert verify.returncode == 0 and "verify: ok" in verify.stdout


def _readme_quick_start() -> list[str]:
    """The `atb live …` part of the README's quick start command, as written there."""
    import shlex

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("python3 -m venv .venv && "))
    command = shlex.split(line.split("&&")[-1])
    assert command[0] == ".venv/bin/atb"
    return [*ATB, *command[1:]]


def test_the_readme_quick_start_trades_btc_and_eth_from_one_wallet_offline(tmp_path):
    command = _readme_quick_start()
    assert command[command.index("--symbol") + 1:][:3] == ["BTCUSDT", "--symbol", "ETHUSDT"]
    run = _run(command, tmp_path, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "Started session #1 (ml_basic BTCUSDT,ETHUSDT 1h paper) with initial balance $1,000.00" in out
    for pair, close in (("BTCUSDT", r"\$16,529\.67"), ("ETHUSDT", r"\$1,194\.09")):
        assert re.search(rf"^2023-01-01T00:00:00Z  {pair} +close +{close} ", out, re.M), pair
        assert re.search(rf"^    {pair} (bought|.*: sold) ", out, re.M), pair  # both pairs traded
    assert out.splitlines()[-1].endswith("(BTCUSDT 2023-01-13T11:00Z, ETHUSDT 2023-01-13T11:00Z)")
    verify = _run([*ATB, "db", "verify"], tmp_path)
    assert verify.returncode == 0 and "session #1 ml_basic BTCUSDT,ETHUSDT 1h paper (active): ok" in verify.stdout


def test_three_hundred_ticks_at_once_equal_three_runs_of_a_hundred(tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    assert _run([*LIVE, "--ticks", "300"], one).returncode == 0
    for _ in range(3):
        assert _run([*LIVE, "--ticks", "100"], many).returncode == 0
    summary = [_run([*ATB, "balance", "history", "--limit", "500"], d).stdout for d in (one, many)]
    strip = [re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "", s) for s in summary]  # wall-clock times differ
    assert strip[0] == strip[1] and "fee" in strip[0]


def test_fresh_needs_confirm_and_explains(tmp_path):
    refused = _run([*LIVE, "--ticks", "1", "--fresh"], tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: --fresh resets the account") and "--confirm" in refused.stderr
    assert not (tmp_path / "atb.sqlite3").exists()
    assert _run([*LIVE, "--ticks", "2"], tmp_path).returncode == 0
    fresh = _run([*LIVE, "--ticks", "1", "--fresh", "--confirm", "--initial-balance", "250"], tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "Reset session #1 (ml_basic BTCUSDT 1h paper) to $250.00 (--fresh)" in fresh.stdout
    history = _run([*ATB, "balance", "history"], tmp_path).stdout
    assert " reset " in history and " initial " in history  # one account: the reset and what came before


def test_exchange_feed_without_network_exits_with_one_line_and_changes_nothing(tmp_path):
    result = _run([*ATB, "live", "ml_basic", "--symbol", "BTCUSDT", "--paper-trading", "--feed", "exchange",
                   "--exchange", "binanceus"], tmp_path, timeout=180,
                  HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach binanceus")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["live", "nope", "--symbol", "BTCUSDT", "--paper-trading"], "unknown strategy 'nope'"),
        (["live", "ml_basic", "--symbol", "BTCUSDT"], "pass --paper-trading"),
        (["live", "ml_basic", "--symbol", "SOLUSDT", "--paper-trading", "--feed", "replay"],
         "no bundled candles for SOLUSDT; pass --data SOLUSDT=FILE"),
        (["live", "ml_basic", "--symbol", "BTCUSDT", "--paper-trading", "--initial-balance", "-5"],
         "initial balance must not be negative"),
        (["live", "ml_basic", "--symbol", "BTCUSDT", "--paper-trading", "--timeframe", "7m"], "unsupported timeframe"),
        (["live", "ml_basic", "--symbol", "BTCUSDT", "--symbol", "SOLUSDT", "--paper-trading", "--feed", "replay"],
         "no bundled candles for SOLUSDT"),
        (["live", "ml_basic", "--symbol", "ETHBTC", "--paper-trading", "--feed", "replay"],
         "ETHBTC is quoted in BTC, which is not USD: add a BTC/USD pair (like BTCUSDT)"),
        (["live", "ml_basic", "--symbol", "BTCUSDT", "--paper-trading", "--feed", "replay", "--data",
          "ETHUSDT=eth.csv"], "--data names ETHUSDT, which the bot does not trade"),
    ],
)
def test_bad_live_arguments_are_one_line_errors_and_create_nothing(tmp_path, args, message):
    result = _run([*ATB, *args], tmp_path)
    assert result.returncode in (1, 2)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_finishes_the_current_tick_then_exits(tmp_path):
    proc = subprocess.Popen([*LIVE], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until it is ticking
        if line.startswith("2023-01-01T05"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Stopping after the current tick" in err
    assert "Stopped after" in out
    verify = _run([*ATB, "db", "verify"], tmp_path)
    assert "verify: ok" in verify.stdout


def test_backtest_prints_a_summary_with_return_drawdown_trades_and_fees(tmp_path):
    result = _run([*ATB, "backtest", "ma_crossover", "--symbol", "BTCUSDT", "--timeframe", "1h", "--days", "30",
                   "--initial-balance", "1000"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ma_crossover on BTCUSDT 1h: 720 candles" in out
    for label in ("return", "max drawdown", "trades", "fees", "buy and hold"):
        assert label in out
    assert "ledger verified  ok" in out
    assert "Backtesting" in result.stderr  # the progress bar
    assert list(tmp_path.iterdir()) == []  # the database was thrown away
