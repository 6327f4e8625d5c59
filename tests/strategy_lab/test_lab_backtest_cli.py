"""`atb backtest a,b --from … --to … --output DIR`: several strategies on the same candles, the headline table with
buy and hold beside, and the files a run leaves behind — trades, ledger, report JSON and HTML."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_SECRET_ARN")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", "backtest", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_two_strategies_over_a_date_range_write_their_reports(tmp_path: Path) -> None:
    result = run(["ma_crossover,ml_basic", "--from", "2024-03-01", "--to", "2024-04-30", "--output", "out"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # 1 March 00:00 to 30 April 23:00 included: 61 days of hours, the same candles for both
    assert "ma_crossover on BTCUSDT 1h: 1464 candles, 2024-03-01T00:00:00Z → 2024-04-30T23:00:00Z" in out
    assert "ml_basic on BTCUSDT 1h: 1464 candles, 2024-03-01T00:00:00Z → 2024-04-30T23:00:00Z" in out
    header = next(line for line in out.splitlines() if "buy and hold" in line and "ma_crossover" in line)
    assert header.split() == ["ma_crossover", "ml_basic", "buy", "and", "hold"]
    for label in ("total return", "CAGR", "max drawdown", "drawdown length", "Sharpe", "Sortino", "Calmar",
                  "win rate", "profit factor", "expectancy", "SQN", "exposure", "fees"):
        assert any(line.startswith(label) for line in out.splitlines()), label

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["strategies"]) == {"ma_crossover", "ml_basic"} and summary["candles"] == 1464
    for name in ("ma_crossover", "ml_basic"):
        folder = tmp_path / "out" / name
        assert sorted(p.name for p in folder.iterdir()) == ["ledger.csv", "report.html", "report.json",
                                                            "trades.csv", "trades.json"]
        report = json.loads((folder / "report.json").read_text(), parse_float=Decimal)
        trades = list(csv.DictReader((folder / "trades.csv").open()))
        stats = report["strategy_metrics"]
        assert stats["trades"] == len(trades) == len(json.loads((folder / "trades.json").read_text()))
        assert f"trades           {len(trades)} (" in out
        # the fees are the ledger's fee rows, and every trade's fees appear there too
        ledger = list(csv.DictReader((folder / "ledger.csv").open()))
        fee_rows = -sum(Decimal(r["delta"]) for r in ledger if r["kind"] == "fee")
        assert Decimal(str(stats["fees"])) == fee_rows >= sum(Decimal(t["fees"]) for t in trades)
        assert report["ledger_verified"] is True
        net = sum((Decimal(t["realized_pnl"]) - Decimal(t["fees"]) for t in trades), Decimal(0))
        by_reason = sum(Decimal(str(v["net"])) for v in stats["by_exit_reason"].values())
        assert abs(by_reason - net) <= Decimal("0.01") * len(stats["by_exit_reason"])
        assert list(stats["monthly_returns_pct"]) == ["2024-03", "2024-04"]
        assert report["buy_and_hold_metrics"]["trades"] is None


def test_bad_dates_and_parameters_are_refused_in_one_line(tmp_path: Path) -> None:
    for args, message in (
        (["ma_crossover", "--from", "2024-13-01"], "--from '2024-13-01': expected a date like 2024-01-31"),
        (["ma_crossover", "--from", "2024-05-01", "--to", "2024-04-01"], "--to must not be before --from"),
        (["ma_crossover", "--days", "3", "--from", "2024-04-01"], "give either --days or --from/--to, not both"),
        (["ma_crossover", "--from", "2030-01-01"], "no candles to test between the dates given"),
        (["ma_crossover,ma_crossover"], "each once"),
        (["ma_crossover", "--param", "fast=x"], "--param fast=x: fast is int"),
        (["ma_crossover", "--param", "fast=60"], "strategy ma_crossover refused fast=60: ValueError: need 0 < fast"),
    ):
        result = run([*args, "--output", "out"], tmp_path)
        assert result.returncode == 2 and result.stdout == "", (args, result.stdout)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
