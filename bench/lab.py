"""The strategy lab's speed: ``atb backtest ma_crossover --days 691 --output DIR`` (16,584 BTCUSDT hours) from the
engine to the last report file, split into engine, statistics and files. Target: ≤ 2 s including the reports.

    .venv/bin/python bench/lab.py [--runs 3] [--strategy ma_crossover] [--days 691]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chalicelib.bot.backtest import run_backtest
from chalicelib.bot.observability import use_plain_logs
from lab.report import analyse, write_run, write_summary


def once(strategy: str, days: int) -> tuple[float, float, float, int, int]:
    t0 = time.perf_counter()
    summary = run_backtest(strategy, days=days, initial_balance=Decimal(1000))
    t1 = time.perf_counter()
    report = analyse(summary)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_run(report, Path(tmp) / strategy)
        write_summary([report], Path(tmp))
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, summary.candles, summary.trades


def main() -> None:
    import logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--strategy", default="ma_crossover")
    parser.add_argument("--days", type=int, default=691)
    args = parser.parse_args()
    use_plain_logs(logging.ERROR)
    runs = [once(args.strategy, args.days) for _ in range(args.runs)]
    candles, trades = runs[0][3], runs[0][4]
    print(f"atb backtest {args.strategy} --days {args.days} --output DIR: {candles:,} candles, {trades} trades")
    print(f"{'run':>4}  {'engine s':>9}  {'stats s':>8}  {'files s':>8}  {'total s':>8}  {'candles/s':>10}")
    totals = []
    for i, (engine, stats, files, _, _) in enumerate(runs, 1):
        total = engine + stats + files
        totals.append(total)
        print(f"{i:>4}  {engine:>9.2f}  {stats:>8.2f}  {files:>8.2f}  {total:>8.2f}  {candles / total:>10,.0f}")
    median = statistics.median(totals)
    print(f"median {median:.2f} s including the reports: {'meets' if median <= 2 else 'misses'} the ≤ 2 s target")


if __name__ == "__main__":
    main()
