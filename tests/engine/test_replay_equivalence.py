"""Promise 5: over 1,000 recorded candles, any pattern of chunked, duplicated and crashed ticks ends in exactly
the state of one uninterrupted run — balance, ledger (amounts, kinds, order), positions, trades, tick log — and
the ledger verifies. Every scenario runs on SQLite and on PostgreSQL and is compared with one reference run.

Each scenario also runs for a bot trading two pairs from one wallet (BTCUSDT + ETHUSDT over the same 600 recorded
hours): the same promise with the candles of both pairs applied in market-time, then symbol order — the snapshot
compares the marks of both pairs, the tick rows with their symbols, the positions and trades of each pair and the
one ledger."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from engine_testing import HOUR, ROOT, bundled_candles, snapshot, write_csv

from chalicelib.bot.runner import LiveTradingEngine, replay_clock
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import TickSettings, fixed_clock, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.engine import get_engine
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.verify import verify

STRATEGY = "ml_basic"
WORKER = Path(__file__).resolve().parent / "replay_worker.py"
#: (symbols, recorded hours): one pair over 1,000 hours; two pairs from one wallet over 600 hours each
PAIRS = {"BTCUSDT": 1_000, "BTCUSDT,ETHUSDT": 600}


@dataclass(frozen=True)
class Replay:
    """The bot's pairs (comma-joined, as sessions store them) and each pair's recording."""

    symbol: str
    files: dict[str, Path]
    hours: int

    def feed(self) -> ReplayFeed:
        return ReplayFeed.several(self.symbol.split(","), "1h", data=self.files)

    def clock(self, feed: ReplayFeed, step: int = 1) -> Any:
        return replay_clock(feed, self.symbol, "1h", step)

    @property
    def candles(self) -> int:
        return self.hours * len(self.files)

    def data_argument(self) -> str:
        """The worker's data argument: ``SYMBOL=FILE,SYMBOL=FILE``."""
        return ",".join(f"{s}={p}" for s, p in self.files.items())


@pytest.fixture(scope="module", params=list(PAIRS), ids=["one_pair", "two_pairs"])
def replay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Replay:
    symbol: str = request.param
    folder = tmp_path_factory.mktemp("replay")
    hours = PAIRS[symbol]
    files = {s: write_csv(folder / f"{s}_1h.csv", bundled_candles(hours, s)) for s in symbol.split(",")}
    return Replay(symbol, files, hours)


@pytest.fixture(scope="module")
def reference(replay: Replay, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted run, one candle time per tick, as `atb live --feed replay` does it."""
    from chalicelib.db.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'ref.sqlite3'}"
    engine = get_engine(url)
    upgrade(engine)
    bot = LiveTradingEngine(STRATEGY, replay.feed(), engine=engine, symbol=replay.symbol)
    bot.start()
    results = bot.run()
    assert results[-1].status == "replay_finished"
    assert sum(r.candles_applied for r in results) == replay.candles
    snap = snapshot(engine)
    assert len(snap["trades"]) >= 10, "the reference run should trade enough to make the comparison meaningful"
    symbols = replay.symbol.split(",")
    # every pair traded, has a tick row per recorded hour and a mark at its last candle
    assert {t[1] for t in snap["trades"]} == set(symbols)
    assert sorted({t[10] for t in snap["ticks"]}) == symbols
    assert all(sum(1 for t in snap["ticks"] if t[10] == s) == replay.hours for s in symbols)
    [session] = snap["sessions"]
    assert sorted(session[11]) == symbols
    assert verify(engine).ok
    engine.dispose()
    return snap


def _start(engine: Any, replay: Replay, feed: ReplayFeed) -> int:
    """Open the account as ``atb live --feed replay`` does: it begins where the replay's first candle opens."""
    spec = BotSpec(strategy=STRATEGY, symbol=replay.symbol, timeframe="1h", exchange="replay")
    first_close = replay.clock(feed)(None)
    assert first_close is not None
    return open_session(engine, spec, market_time=first_close - HOUR).session_id


def _tick(engine: Any, session_id: int, replay: Replay, feed: ReplayFeed, step: int, max_per_tick: int = 500) -> Any:
    return tick_session(engine, session_id, feed, clock=replay.clock(feed, step),
                        settings=TickSettings(max_candles_per_tick=max_per_tick))


def test_the_reference_run_is_the_same_on_both_databases(engine, replay, reference):
    bot = LiveTradingEngine(STRATEGY, replay.feed(), engine=engine, symbol=replay.symbol)
    bot.start()
    for _ in bot.results():
        pass
    assert snapshot(engine) == reference
    assert verify(engine).ok


def test_ticks_in_random_chunks_and_capped_catch_up_end_in_the_reference_state(engine, replay, reference):
    feed = replay.feed()
    session_id = _start(engine, replay, feed)
    rng = random.Random(7)
    ticks = 0
    while True:
        # Some ticks reveal more candles than one tick may apply (cap 40): the rest wait for the next tick.
        result = _tick(engine, session_id, replay, feed, step=rng.choice([1, 5, 17, 60, 333]), max_per_tick=40)
        ticks += 1
        if result.status == "replay_finished":
            break
        assert result.status in ("applied", "up_to_date")
    assert ticks < replay.hours / 2  # really chunked
    assert snapshot(engine) == reference
    assert verify(engine).ok


def test_every_tick_delivered_twice_and_restarted_engines_change_nothing_extra(engine, replay, reference):
    feed = replay.feed()
    rng = random.Random(11)
    session_id = _start(engine, replay, feed)
    duplicates_that_changed_something = 0
    while True:
        step = rng.choice([1, 3, 50])
        first = _tick(engine, session_id, replay, feed, step)
        if first.status == "replay_finished":
            break
        # The same event delivered again: the same "now" (the close of the newest candle it applied).
        assert first.cursor is not None
        again = tick_session(engine, session_id, feed, clock=fixed_clock(first.cursor + HOUR))
        if again.status != "up_to_date":
            duplicates_that_changed_something += 1
        if rng.random() < 0.1:  # a "restart": a new engine object finds and recovers the same session
            assert _start(engine, replay, feed) == session_id
    assert duplicates_that_changed_something == 0
    assert snapshot(engine) == reference
    assert verify(engine).ok


@pytest.mark.slow
def test_a_process_killed_at_random_statements_and_restarted_ends_in_the_reference_state(
    database_url, replay, reference, tmp_path
):
    """30 workers are SIGKILLed at a random SQL statement — before, between and after the writes of a tick
    transaction — each followed by a restart; a last worker runs to the end. (30, not 20: since a tick writes its
    ledger and tick rows with one INSERT each, fewer of a worker's statements are writes.)"""
    rng = random.Random(2024)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills: list[str] = []
    for i in range(30):
        note = tmp_path / f"kill-{i}.txt"
        kill_env = {**env, "ATB_TEST_KILL_AT_STATEMENT": str(rng.randint(2, 80)), "ATB_TEST_KILL_NOTE": str(note)}
        proc = subprocess.run([sys.executable, str(WORKER), database_url, replay.data_argument(), STRATEGY, str(i)],
                              env=kill_env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        kills.append(note.read_text())
    final = subprocess.run([sys.executable, str(WORKER), database_url, replay.data_argument(), STRATEGY, "99"],
                           env=env, capture_output=True, text=True, timeout=300, check=False)
    assert final.returncode == 0, final.stderr[-2000:]

    engine = get_engine(database_url)
    assert snapshot(engine) == reference
    assert verify(engine).ok
    # The kills really landed inside tick transactions, after some of their writes had been sent.
    writes = [k for k in kills if k.split(" ")[0] in ("INSERT", "UPDATE")]
    assert len(writes) >= 5, kills
