"""One tick in a separate process, for the simulator's overlapping ticks and ``kill -9`` faults.

Usage: ``python -m sim.worker DATABASE_URL SESSION_ID NOW|STEP [KILL_AT NOTE [SYMBOLS]]``: NOW (an ISO time) is the
tick's "now"; a number STEP reveals that many recorded candles after the cursor; SYMBOLS are the bot's pairs,
comma-joined (default BTCUSDT). With ``KILL_AT`` (0: never) it SIGKILLs itself just before sending its KILL_AT-th SQL
statement (possibly between two writes of an open tick transaction), after writing
that statement to NOTE. Prints the tick's status on its last line.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from chalicelib.bot.runner import replay_clock
from chalicelib.bot.tick import fixed_clock, tick_session
from chalicelib.db.engine import get_engine
from chalicelib.db.errors import describe
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.symbols import split_pairs


def die_before_statement(engine: Any, kill_at: int, note: Path | None = None) -> None:
    """SIGKILL this process just before it sends its ``kill_at``-th SQL statement through ``engine`` (0: never),
    after writing that statement to ``note``: a crash at an exact point, possibly inside an open transaction."""
    if not kill_at:
        return
    count = 0

    @event.listens_for(engine, "before_cursor_execute")
    def _maybe_die(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal count
        count += 1
        if count >= kill_at:
            if note is not None:
                note.write_text(" ".join(statement.split())[:80])
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    url, session_id, when = argv[0], int(argv[1]), argv[2]
    kill_at = int(argv[3]) if len(argv) > 3 else 0
    note = Path(argv[4]) if len(argv) > 4 else None
    symbol = argv[5] if len(argv) > 5 else "BTCUSDT"
    engine = get_engine(url)
    die_before_statement(engine, kill_at, note)

    feed = ReplayFeed.several(split_pairs(symbol), "1h")
    clock = (replay_clock(feed, symbol, "1h", int(when)) if when.isdigit()
             else fixed_clock(datetime.fromisoformat(when)))
    status: str
    try:
        status = tick_session(engine, session_id, feed, clock=clock).status
    except Exception as exc:
        problem = describe(exc)
        if problem is None:
            raise
        status = problem.kind
    sys.stdout.write(f"{status}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
