"""`atb optimize`: a search on a training window whose best parameters are shown on held-out data beside their
in-sample results, with walk-forward folds and a plain verdict; resumable from its SQLite study."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.optimize import verdict

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_SECRET_ARN")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", "optimize", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_a_search_reports_in_sample_beside_held_out_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    args = ["ma_crossover", "--param", "fast=5:15", "--param", "slow=20:40", "--metric", "sharpe", "--from",
            "2024-09-01", "--to", "2024-12-31", "--storage", "study.sqlite3", "--seed", "7", "--output", "out"]
    first = run([*args, "--trials", "4"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(re.findall(r"^  trial \d/4: sharpe ", first.stderr, re.M)) == 4  # progress, once per trial
    header = next(line for line in first.stdout.splitlines() if "in-sample" in line)
    assert header.split() == ["in-sample", "held-out", "fold", "1", "fold", "2", "fold", "3", "defaults,", "held-out"]
    assert re.search(r"^(DOES NOT HOLD UP on data the search never saw: |holds up: )", first.stdout, re.M)

    report = json.loads((tmp_path / "out" / "optimize.json").read_text())
    assert report["trials"] == 4
    assert report["in_sample"]["last_candle"] < report["held_out"]["first_candle"]  # the search never saw it
    assert [f["candles"] for f in report["folds"]] and sum(f["candles"] for f in report["folds"]) == \
        report["held_out"]["candles"]
    assert report["in_sample"]["parameters"] == report["held_out"]["parameters"] == report["best_parameters"]

    again = run([*args, "--trials", "6"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4 of 6 trials already done" in again.stderr
    assert len(re.findall(r"^  trial \d/6: ", again.stderr, re.M)) == 2  # only the missing two ran
    assert json.loads((tmp_path / "out" / "optimize.json").read_text())["trials"] == 6


def test_bad_ranges_are_refused_in_one_line_before_any_work(tmp_path: Path) -> None:
    for args, message in (
        (["--param", "speed=1:3"], "strategy ma_crossover has no parameter 'speed'"),
        (["--param", "fast=30:10"], "LOW must be below HIGH"),
        (["--param", "fast=a:b"], "--param fast=a: fast is int"),
        (["--param", "fast=12"], "give at least one --param NAME=LOW:HIGH to search"),
    ):
        result = run(["ma_crossover", *args, "--trials", "2"], tmp_path)
        assert result.returncode == 2 and result.stdout == "", result.stdout
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []  # no study file was created


def test_the_verdict_says_plainly_when_the_result_does_not_hold_up() -> None:
    assert verdict("sharpe", 2.0, 1.5, [0.5, 1.0, 2.0])[0]
    ok, text = verdict("sharpe", 2.0, 0.8, [0.5, -1.0, 2.0])
    assert not ok and text == ("DOES NOT HOLD UP on data the search never saw: held-out sharpe 0.80 is less than "
                               "half the in-sample 2.00.")
    ok, text = verdict("sharpe", 2.0, -0.1, [-0.5, -1.0, 2.0])
    assert not ok and "held-out sharpe is -0.10, not positive" in text and "only 1 of 3" in text
    assert not verdict("sharpe", 2.0, None, [None])[0]
