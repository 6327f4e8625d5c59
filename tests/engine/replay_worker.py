"""A separate process that replays candles through the engine in random-sized ticks until the data ends.

Used by the crash tests: with ``ATB_TEST_KILL_AT_STATEMENT=k`` it SIGKILLs itself just before sending its k-th
SQL statement (so possibly between two writes of an open tick transaction), after writing that statement to
``ATB_TEST_KILL_NOTE``. Usage: ``replay_worker.py DATABASE_URL SYMBOL=CSV[,SYMBOL=CSV…] STRATEGY SEED`` (one pair or
several traded from one wallet).
"""

from __future__ import annotations

import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

from chalicelib.bot.runner import replay_clock
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import TickSettings, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.engine import get_engine
from chalicelib.trading.feeds import ReplayFeed
from sim.worker import die_before_statement


def main() -> None:
    url, data, strategy, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    files = dict(item.split("=", 1) for item in data.split(","))
    symbol = ",".join(files)
    engine = get_engine(url)
    note = os.environ.get("ATB_TEST_KILL_NOTE")
    die_before_statement(engine, int(os.environ.get("ATB_TEST_KILL_AT_STATEMENT", "0")), Path(note) if note else None)

    rng = random.Random(seed)
    feed = ReplayFeed.several(list(files), "1h", data={s: Path(p) for s, p in files.items()})
    spec = BotSpec(strategy=strategy, symbol=symbol, timeframe="1h", exchange="replay")
    first_close = replay_clock(feed, symbol, "1h")(None)
    assert first_close is not None
    session_id = open_session(engine, spec, market_time=first_close - timedelta(hours=1)).session_id
    settings = TickSettings(max_candles_per_tick=int(os.environ.get("ATB_TEST_MAX_PER_TICK", "500")))
    while True:
        step = rng.choice([1, 1, 2, 3, 5])
        result = tick_session(engine, session_id, feed, clock=replay_clock(feed, symbol, "1h", step),
                              settings=settings)
        if result.status == "replay_finished":
            break
        if result.status == "locked":  # the killed process's transaction is still being torn down
            time.sleep(0.05)
        elif result.status not in ("applied", "up_to_date"):
            raise SystemExit(f"unexpected tick status {result.status}: {result.message}")
    print("finished", session_id)


if __name__ == "__main__":
    main()
