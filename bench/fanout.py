
"""Fan-out throughput (issue 14): N bots (default 1,000) with one new closed candle each, through the dispatcher
→ queue → worker path on the local PostgreSQL, with 1, 2 and 4 worker processes.

* dispatcher — ``fleet.due_bots`` (one read of every active bot and its cursor) and one message per due bot
  (``scheduled.tick_message``), as the scheduled function does; the queue is an in-process
  ``multiprocessing.Queue`` standing in for SQS (SQS's own latency is not in these figures).
* worker — each worker is a separate process (as each Lambda worker is) running ``scheduled.run_worker`` on one
  message at a time: the real tick (``open_session`` finding the account, ``tick_session``: strategy, stops,
  ledger, one transaction). Candles come from the bundled BTCUSDT 1h file served for every bot's symbol.
* figures — bots per second from the first message taken to the last commit, per-bot tick time p50/p95 (the
  worker's time for one message), and the most connections the bench database had open at once
  (``pg_stat_activity``, sampled every 20 ms).

The first round opens every bot's account (and applies its first candle) and is reported separately; each
measured round then starts one hour later, so every bot has exactly one new candle.

    .venv/bin/python bench/fanout.py                 # 1,000 bots; 1, 2, 4 workers
    .venv/bin/python bench/fanout.py --bots 200 --workers 1,2

The database (``atb_bench_*``) is made for the run and dropped at the end, also on error and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    machine,
    percentile,
    pg_connect,
    quiet_logs,
    sigterm_as_interrupt,
    table,
    throwaway_database,
)

from chalicelib.trading.feeds import ReplayFeed

START = datetime(2023, 2, 1, 0, 1, tzinfo=UTC)


class AnySymbolReplay(ReplayFeed):
    """The bundled BTCUSDT 1h candles for whatever symbol a bot trades."""

    def fetch_closed_candles(self, symbol: str, timeframe: str, since: datetime | None, limit: int,
                             now: datetime) -> list[Any]:
        return super().fetch_closed_candles("BTCUSDT", timeframe, since, limit, now)


FEED = AnySymbolReplay()


def _worker(url: str, jobs: Any, results: Any, ready: Any) -> None:
    os.environ["DATABASE_URL"] = url
    quiet_logs()
    from chalicelib.bot import scheduled

    scheduled.make_feed = lambda _exchange: FEED
    timings: list[tuple[float, str]] = []
    ready.wait()
    while True:
        body = jobs.get()
        if body is None:
            break
        started = time.perf_counter()
        try:
            [summary] = scheduled.run_worker([{"body": body}])
            status = str(summary.get("status"))
        except Exception as exc:  # counted, as SQS would retry it
            status = f"error: {type(exc).__name__}"
        timings.append(((time.perf_counter() - started) * 1000, status))
    results.put(timings)


def _sample_connections(admin_url: str, database: str, stop: threading.Event, peak: list[int]) -> None:
    conn = pg_connect(admin_url)
    try:
        while not stop.is_set():
            [[count]] = conn.run("SELECT count(*) FROM pg_stat_activity WHERE datname = :d", d=database)
            peak[0] = max(peak[0], int(count))
            time.sleep(0.02)
    finally:
        conn.close()


def run_round(url: str, admin_url: str, now: datetime, workers: int) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    from chalicelib import fleet
    from chalicelib.bot.scheduled import tick_message
    from chalicelib.db.engine import dispose_engines, get_engine

    began = time.perf_counter()
    due, _stale = fleet.due_bots(now, get_engine(url))
    messages = [json.dumps(tick_message(d.bot_id, d.candle_close, now)) for d in due]
    dispatch_ms = (time.perf_counter() - began) * 1000
    dispose_engines()  # no pooled connection crosses the fork
    ctx = mp.get_context("fork")
    jobs, results = ctx.Queue(), ctx.Queue()
    for m in messages:
        jobs.put(m)
    for _ in range(workers):
        jobs.put(None)
    ready = ctx.Barrier(workers + 1)
    procs = [ctx.Process(target=_worker, args=(url, jobs, results, ready)) for _ in range(workers)]
    for p in procs:
        p.start()
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_sample_connections,
                               args=(admin_url, make_url(url).database, stop, peak), daemon=True)
    sampler.start()
    ready.wait()
    t0 = time.perf_counter()
    timings: list[tuple[float, str]] = []
    for _ in procs:
        timings.extend(results.get())
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    stop.set()
    sampler.join()
    durations = [ms for ms, _ in timings]
    statuses: dict[str, int] = {}
    for _, status in timings:
        statuses[status] = statuses.get(status, 0) + 1
    return {"workers": workers, "bots": len(messages), "dispatch_ms": dispatch_ms, "seconds": elapsed,
            "bots_per_s": len(messages) / elapsed if elapsed else 0.0, "p50": percentile(durations, 50),
            "p95": percentile(durations, 95), "connections": peak[0], "statuses": statuses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL",
                                                              "postgresql+pg8000://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    sigterm_as_interrupt()
    quiet_logs()
    from chalicelib import fleet
    from chalicelib.bots import BotSpec
    from chalicelib.db.engine import get_engine
    from chalicelib.ledger import Actor

    FEED.fetch_closed_candles("BTCUSDT", "1h", None, 1, START)  # load the file once, before the forks
    print(f"# bench/fanout.py: {args.bots} bots, workers {counts} — {machine()}")
    with throwaway_database("postgres", args.admin_url) as url:
        engine = get_engine(url)
        began = time.perf_counter()
        for i in range(args.bots):
            fleet.add_bot(BotSpec(strategy="ml_basic", symbol=f"C{i:04d}USDT"), Decimal(1000),
                          actor=Actor("bench"), engine=engine)
        print(f"added {args.bots} bots in {time.perf_counter() - began:.1f} s")
        rows = []
        first = run_round(url, args.admin_url, START, max(counts))
        rows.append(["first tick (opens accounts)", first["workers"], first["bots"], f"{first['dispatch_ms']:.0f}",
                     f"{first['seconds']:.1f}", f"{first['bots_per_s']:.1f}", f"{first['p50']:.1f}",
                     f"{first['p95']:.1f}", first["connections"], json.dumps(first["statuses"])])
        for i, workers in enumerate(counts, start=1):
            r = run_round(url, args.admin_url, START + timedelta(hours=i), workers)
            rows.append(["one new candle each", workers, r["bots"], f"{r['dispatch_ms']:.0f}", f"{r['seconds']:.1f}",
                         f"{r['bots_per_s']:.1f}", f"{r['p50']:.1f}", f"{r['p95']:.1f}", r["connections"],
                         json.dumps(r["statuses"])])
        print(table(["round", "workers", "bots", "dispatch ms", "wall s", "bots/s", "p50 ms", "p95 ms",
                     "max conns", "statuses"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
