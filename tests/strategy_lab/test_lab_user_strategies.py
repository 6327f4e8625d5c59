"""Your own strategies without forking: a strategy file in a directory of your own (or an installed entry point)
loads with clear errors, backtests, live-trades on replay and passes `atb check`; one that peeks at the next
candle fails `atb check` with the candle named."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.trading import strategies
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.strategies import loader

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "strategies" / "donchian_breakout.py"
ATB = [sys.executable, "-m", "chalicelib.cli"]

PEEKER = '''
import inspect
from decimal import Decimal
from chalicelib.trading.strategies.base import EnterLong, Exit, Hold


class Peeker:
    """Finds the engine's batch of fetched candles on the call stack and trades on the next candle's close."""

    name = "peeker"
    warmup = 2

    def decide(self, candles, position):
        now, later = candles[-1], None
        frame = inspect.currentframe()
        while frame is not None and later is None:  # the engine's candle list of this pair, up the stack
            batch = frame.f_locals.get("candles")
            if isinstance(batch, list):
                later = next((c for c in batch if c.open_time > now.open_time), None)
            frame = frame.f_back
        if later is None:
            return Hold()
        if position is None and later.close > now.close:
            return EnterLong(stop_loss=(now.close * Decimal("0.9")).quantize(Decimal("0.01")),
                             take_profit=(now.close * Decimal("1.2")).quantize(Decimal("0.01")), reason="peek")
        if position is not None and later.close < now.close:
            return Exit(reason="peek")
        return Hold()


STRATEGY = Peeker
'''


def run(args: list[str], cwd: Path, extra_path: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_SECRET_ARN",
                                                            "ATB_STRATEGY_PATH")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), extra_path) if p)
    return subprocess.run([*ATB, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    folder = tmp_path / "my_strategies"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    return folder


def test_the_documented_example_loads_backtests_live_trades_on_replay_and_passes_check(mine: Path,
                                                                                       tmp_path: Path) -> None:
    path = ["--strategy-path", str(mine)]
    bt = run(["backtest", "donchian_breakout", *path, "--days", "20", "--param", "entry=30"], tmp_path)
    assert bt.returncode == 0, bt.stderr
    assert bt.stdout.startswith("donchian_breakout on BTCUSDT 1h: 480 candles")
    assert "ledger verified  ok" in bt.stdout and "buy and hold" in bt.stdout

    live = run(["live", "donchian_breakout", *path, "--symbol", "BTCUSDT", "--paper-trading", "--feed", "replay",
                "--ticks", "40"], tmp_path)
    assert live.returncode == 0, live.stderr
    assert "Started session #1 (donchian_breakout BTCUSDT 1h paper)" in live.stdout
    assert "Stopped after 40 tick(s): session #1" in live.stdout
    verify = run(["db", "verify"], tmp_path)
    assert verify.returncode == 0 and "verify: ok" in verify.stdout

    checked = run(["check", "donchian_breakout", *path, "--days", "10", "--cuts", "4"], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "look-ahead: pass" in checked.stdout and "warm-up: pass" in checked.stdout


def test_a_strategy_that_peeks_at_the_next_candle_fails_check_with_the_candle_named(tmp_path: Path) -> None:
    folder = tmp_path / "peeking"
    folder.mkdir()
    (folder / "peeker.py").write_text(PEEKER)
    result = run(["check", "peeker", "--strategy-path", str(folder), "--days", "10", "--cuts", "4"], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    found = re.search(r"^look-ahead: FAILED at candle (\S+): with the later candles: (\w+) .*; without them: (\w+) ",
                      result.stdout, re.M)
    assert found, result.stdout
    assert (found[2], found[3]) != ("hold", "hold") and found[3] == "hold"
    candles = ReplayFeed().all_candles("BTCUSDT", "1h")
    named = next(i for i, c in enumerate(candles) if c.open_time.strftime("%Y-%m-%dT%H:%M:%SZ") == found[1])
    assert candles[named].open_time >= candles[-240].open_time  # inside the checked 10 days
    assert "warm-up: pass" in result.stdout  # without the engine's batch it only holds, whatever the history


def test_an_installed_entry_point_is_found_by_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "atb_demo-0.1.dist-info"
    dist.mkdir(parents=True)
    shutil.copy(EXAMPLE, site / "demo_strategies.py")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: atb-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[atb.strategies]\ndonchian_breakout = demo_strategies:DonchianBreakout\n")
    result = run(["backtest", "donchian_breakout", "--days", "5"], tmp_path, extra_path=str(site))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("donchian_breakout on BTCUSDT 1h: 120 candles")

    (dist / "entry_points.txt").write_text("[atb.strategies]\nbreakout = demo_strategies:DonchianBreakout\n")
    result = run(["backtest", "breakout", "--days", "5"], tmp_path, extra_path=str(site))
    assert result.returncode == 2 and result.stdout == ""
    assert "the entry point is called 'breakout' but the strategy's name is 'donchian_breakout'" in result.stderr


@pytest.mark.parametrize(("source", "message"), [
    ("x = 1\n", "defines no STRATEGY (set STRATEGY = YourStrategyClass)"),
    ("def broken(:\n", "syntax error at line 1"),
    ("import no_such_module_here\n", "importing it failed: ModuleNotFoundError"),
    ("STRATEGY = 3\n", "STRATEGY must be a class or a callable, not int"),
    ("class S:\n    name = 'Bad Name'\n    warmup = 1\n    def decide(self, c, p): pass\nSTRATEGY = S\n",
     "name must be lower-case letters"),
    ("class S:\n    name = 'ok_name'\n    warmup = 0\n    def decide(self, c, p): pass\nSTRATEGY = S\n",
     "warmup must be an int of at least 1"),
    ("class S:\n    name = 'ok_name'\n    warmup = 3\nSTRATEGY = S\n", "has no decide(candles, position) method"),
    ("class S:\n    name = 'ok_name'\n    warmup = 3\n    def decide(self, c): pass\nSTRATEGY = S\n",
     "decide must take (candles, position)"),
    ("class S:\n    def __init__(self, fast):\n        pass\nSTRATEGY = S\n", "parameter 'fast' has no default"),
    ("class S:\n    def __init__(self, when=[1]):\n        pass\nSTRATEGY = S\n",
     "parameter 'when' defaults to list"),
    ("class S:\n    def __init__(self):\n        raise ValueError('nope')\nSTRATEGY = S\n",
     "building the strategy with its defaults failed: ValueError: nope"),
])
def test_a_broken_strategy_file_is_refused_with_one_line_naming_the_file(tmp_path: Path, source: str,
                                                                         message: str) -> None:
    (tmp_path / "mine.py").write_text(source)
    with pytest.raises(loader.StrategyLoadError) as caught:
        loader.load_directory(tmp_path)
    text = str(caught.value)
    assert text.startswith(f"strategy file {tmp_path / 'mine.py'}: ") and message in text
    assert "\n" not in text


def test_the_cli_refuses_a_bad_strategy_path_before_doing_anything(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "clash.py").write_text("from chalicelib.trading.strategies.ma_crossover import MaCrossover\n"
                                     "STRATEGY = MaCrossover\n")
    result = run(["backtest", "ma_crossover", "--strategy-path", str(folder), "--days", "1"], tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: strategy file ") and "is a built-in strategy's name" in result.stderr
    missing = run(["live", "x", "--strategy-path", str(tmp_path / "nope"), "--symbol", "BTCUSDT", "--paper-trading",
                   "--feed", "replay"], tmp_path)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    assert not (tmp_path / "atb.sqlite3").exists()


def test_files_bundled_in_chalicelib_user_strategies_are_found_by_name_as_the_lambda_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mine: Path
) -> None:
    monkeypatch.setattr(strategies, "BUNDLED_DIR", mine)
    monkeypatch.setattr(strategies, "_USER", {})
    monkeypatch.setattr(strategies, "_discovered", False)
    assert strategies.get_strategy("donchian_breakout", entry=25).warmup == 26
    assert "donchian_breakout" in strategies.available_strategies()
    assert strategies.strategy_entry("donchian_breakout").parameters == {
        "entry": 20, "exit": 10, "stop_atr": 2, "target_atr": 4}
    with pytest.raises(strategies.StrategyLoadError, match="has no parameter speed"):
        strategies.get_strategy("donchian_breakout", speed=3)
    with pytest.raises(strategies.StrategyLoadError, match="refused entry=1: ValueError: entry and exit need"):
        strategies.get_strategy("donchian_breakout", entry=1)


def test_a_broken_bundled_strategy_never_stops_a_built_in_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.setattr(strategies, "BUNDLED_DIR", tmp_path)
    monkeypatch.setattr(strategies, "_USER", {})
    monkeypatch.setattr(strategies, "_discovered", False)
    assert strategies.get_strategy("ma_crossover").name == "ma_crossover"
    for _ in range(2):  # a warm Lambda container says why on every look-up
        with pytest.raises(strategies.UnknownStrategyError, match=r"unknown strategy 'mine'.*importing it failed"):
            strategies.get_strategy("mine")


SHORT_WARMUP = '''
from decimal import Decimal
from chalicelib.trading.strategies.base import EnterLong, Exit, Hold


class SeededEma:
    """An exponential average seeded at the first candle it is given: it needs far more than 10 candles."""

    name = "seeded_ema"
    warmup = 10

    def decide(self, candles, position):
        ema = candles[0].close
        for c in candles[1:]:
            ema = ema + (c.close - ema) * Decimal("0.05")
        close = candles[-1].close
        if position is None and close > ema:
            return EnterLong(stop_loss=(close * Decimal("0.9")).quantize(Decimal("0.01")),
                             take_profit=(close * Decimal("1.2")).quantize(Decimal("0.01")))
        if position is not None and close < ema:
            return Exit()
        return Hold()


STRATEGY = SeededEma
'''


def test_a_strategy_whose_warm_up_is_too_short_fails_the_warm_up_check_with_the_candle_named(tmp_path: Path) -> None:
    folder = tmp_path / "ema"
    folder.mkdir()
    (folder / "seeded_ema.py").write_text(SHORT_WARMUP)
    result = run(["check", "seeded_ema", "--strategy-path", str(folder), "--days", "5", "--cuts", "2"], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "look-ahead: pass" in result.stdout  # the engine always hands it the same 10 candles
    assert re.search(r"^warm-up: FAILED at candle \d{4}-\d\d-\d\dT\d\d:00:00Z: \((flat|holding)\) from the declared "
                     r"10 candles: .*; from 40: ", result.stdout, re.M), result.stdout


@pytest.mark.parametrize("name", ["ma_crossover", "ml_basic"])
def test_the_built_in_strategies_pass_check(name: str) -> None:
    from lab.check import check

    candles = ReplayFeed().all_candles("BTCUSDT", "1h")
    report = check(name, symbol="BTCUSDT", timeframe="1h", candles=candles, days=12, cuts=6, samples=60)
    assert report.passed, [f.line() for f in report.findings]
    assert report.candles == 288 and report.cut_points == 6 and report.warmup_samples == 60
