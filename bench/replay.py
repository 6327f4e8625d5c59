"""Replay throughput: candles per second through the full engine, with persistence, over the bundled candles.

For each database (SQLite, PostgreSQL) and each catch-up mode, a fresh session trades ``ml_basic`` over the
bundled 18,000 BTCUSDT 1h candles (after the strategy's warm-up) with ``tick_session`` and the replay clock:

* catch-up  — ``max_candles_per_tick=500``: each tick applies up to 500 candles in one transaction (what a tick does
              after an outage, and what ``atb backtest`` does);
* one/tick  — one candle per tick: one transaction per candle (what the hourly schedule does in steady state).

It prints candles/s, ticks, trades, the final balance, and whether ``atb db verify`` passes afterwards. Target:
≥ 1,000 candles/s on PostgreSQL when catching up.

    .venv/bin/python bench/replay.py                  # everything (the one-per-tick runs take a minute or two)
    .venv/bin/python bench/replay.py --quick          # 2,000 candles each
    .venv/bin/python bench/replay.py --candles 5000 --db postgres --mode catch-up

Databases are throwaway (``atb_bench_*`` / a temp file) and are dropped at the end, also on error and Ctrl-C.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

from chalicelib.bot.runner import replay_clock
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import TickSettings, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.engine import get_engine
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.strategies import get_strategy

SYMBOL, TIMEFRAME = "BTCUSDT", "1h"
MODES = {"catch-up": 500, "one/tick": 1}


@dataclass
class Run:
    db: str
    mode: str
    candles: int
    seconds: float
    ticks: int
    statements: int
    trades: int
    final_balance: str
    verified: bool | None

    @property
    def rate(self) -> float:
        return self.candles / self.seconds if self.seconds else float("nan")


def replay(kind: str, mode: str, limit: int | None, strategy_name: str, verify: bool,
           profile: Path | None) -> Run:
    feed = ReplayFeed()
    candles = feed.all_candles(SYMBOL, TIMEFRAME)
    strategy = get_strategy(strategy_name)
    start = strategy.warmup  # the first tick decides with a full warm-up window
    total = len(candles) - start - 1 if limit is None else min(limit, len(candles) - start - 1)
    step = MODES[mode]
    settings = TickSettings(max_candles_per_tick=step)
    with C.throwaway_database(kind) as url:
        engine = get_engine(url)
        spec = BotSpec(strategy=strategy_name, symbol=SYMBOL, timeframe=TIMEFRAME, exchange="replay")
        sid = open_session(engine, spec, resume=False, start_cursor=candles[start].open_time).session_id
        stop_at = candles[start + total].open_time
        clock_inner = replay_clock(feed, SYMBOL, TIMEFRAME, step)

        def clock(cursor: datetime | None) -> datetime | None:
            if cursor is not None and cursor >= stop_at:
                return None
            now = clock_inner(cursor)
            limit_now = candles[start + total].close_time(TIMEFRAME)
            return min(now, limit_now) if now is not None else None

        done = ticks = trades = 0
        last_print = 0.0
        profiler = cProfile.Profile() if profile else None
        with C.counting(engine) as counted:
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            while True:
                result = tick_session(engine, sid, feed, clock=clock, strategy=strategy, settings=settings)
                if result.status != "applied":
                    if result.status not in ("replay_finished", "up_to_date"):
                        raise SystemExit(f"{kind} {mode}: tick ended with {result.status}: {result.message}")
                    break
                ticks += 1
                done += result.candles_applied
                trades += result.trades_closed
                now = time.perf_counter()
                if now - last_print > 1.0:
                    last_print = now
                    rate = done / (now - started)
                    eta = (total - done) / rate if rate else 0
                    C.progress(f"{kind} {mode}: {done:,}/{total:,} candles, {rate:,.0f}/s, ~{eta:.0f} s left")
            elapsed = time.perf_counter() - started
            if profiler:
                profiler.disable()
        C.progress_done()
        if profiler and profile:
            out = profile.with_name(f"{profile.stem}-{kind}-{mode.replace('/', '-')}{profile.suffix or '.txt'}")
            with out.open("w") as fh:
                pstats.Stats(profiler, stream=fh).sort_stats("cumulative").print_stats(40)
            print(f"  profile written to {out}", file=sys.stderr)
        verified = None
        if verify:
            from chalicelib.verify import verify as run_verify

            verified = run_verify(engine).ok
        return Run(kind, mode, done, elapsed, ticks, counted.statements, trades,
                   f"{result.balance:,.2f}" if result.balance is not None else "-", verified)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["both", *C.KINDS], default="both")
    parser.add_argument("--mode", choices=["both", *MODES], default="both")
    parser.add_argument("--candles", type=int, default=None, help="replay only this many candles (default: all)")
    parser.add_argument("--strategy", default="ml_basic")
    parser.add_argument("--no-verify", action="store_true", help="skip atb db verify after each run")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a cProfile summary per run next to this path (e.g. /tmp/replay.txt)")
    parser.add_argument("--quick", action="store_true", help="2,000 candles per run")
    args = parser.parse_args()
    if args.quick:
        args.candles = args.candles or 2_000
    C.sigterm_as_interrupt()
    C.quiet_logs()
    print(f"machine: {C.machine()}")
    runs: list[Run] = []
    try:
        for kind in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
            for mode in (MODES if args.mode == "both" else (args.mode,)):
                runs.append(replay(kind, mode, args.candles, args.strategy, not args.no_verify, args.profile))
    except KeyboardInterrupt:
        C.progress_done()
        print("interrupted; databases dropped", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if runs:
            print()
            print(C.table(
                ["db", "mode", "candles", "seconds", "candles/s", "ticks", "statements", "stmts/candle", "trades",
                 "final balance", "verify"],
                [[r.db, r.mode, r.candles, r.seconds, r.rate, r.ticks, r.statements,
                  r.statements / max(r.candles, 1), r.trades, r.final_balance,
                  "-" if r.verified is None else ("ok" if r.verified else "FAILED")] for r in runs],
                title=f"replay of the bundled {SYMBOL} {TIMEFRAME} candles through tick_session ({args.strategy})",
            ))
            for r in runs:
                if r.db == "postgres" and r.mode == "catch-up":
                    verdict = "meets" if r.rate >= 1000 else "misses"
                    print(f"postgres catch-up: {r.rate:,.0f} candles/s {verdict} the ≥ 1,000 candles/s target")


if __name__ == "__main__":
    main()
