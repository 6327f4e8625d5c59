"""``python -m sim --seed N --steps K --db sqlite|postgres``: exit 0 when every check held, 1 with the seed and the
step of the first failure otherwise."""

from __future__ import annotations

import argparse
import signal
import sys

from chalicelib.trading.symbols import join_pairs, split_pairs
from sim.simulator import SimFailure, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--verify-every", type=int, default=25,
                        help="run chalicelib.verify every N steps (and always at the end); default 25")
    parser.add_argument("--progress-every", type=int, default=500)
    parser.add_argument("--symbols", default="BTCUSDT",
                        help="the bot's pairs, comma-joined: one wallet trading them all (default BTCUSDT)")
    args = parser.parse_args(argv)
    # A plain `kill` ends the run through its cleanup (the throwaway PostgreSQL cluster is stopped and removed).
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        summary = run(args.seed, args.steps, args.db, verify_every=args.verify_every,
                      progress_every=args.progress_every, symbol=join_pairs(sorted(split_pairs(args.symbols))))
    except SimFailure as failure:
        print(failure.line(), flush=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary.describe(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
