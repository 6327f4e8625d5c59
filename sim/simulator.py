"""The simulator: one seed, one reproducible sequence of operations and faults against the real code.

Every operation goes through what a user or the scheduler would use — ``tick_session`` over the bundled replay
data, the ``POST``/``GET /api/balance`` handlers, ``switch_strategy`` — in this process or in a separate tick
process (``sim.worker``) that may be SIGKILLed at a chosen SQL statement. After every step a pure-Python model of
the ledger (:class:`Model`, an independent re-statement of the money and unit rules) is compared with the
database; ``chalicelib.verify`` runs every ``verify_every`` steps and at the end; and at the end a fresh database
that replays the same candles and the same accepted changes at the same candle cursors in one uninterrupted run
must hold the same ledger, positions, trades and tick rows.

Only ``random.Random(seed)`` decides what happens; timings (who wins a race) may differ between runs, and every
check accepts exactly the outcomes the product promises for each race.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOUR = timedelta(hours=1)
SYMBOL, TIMEFRAME = "BTCUSDT", "1h"
STRATEGIES = ("ml_basic", "ma_crossover")
INITIAL = Decimal(1000)
READ_TOKEN = "sim-read-token-0123456789abcdef0123456789"
WRITE_TOKEN = "sim-write-token-9876543210fedcba9876543210"
WRITER = "owner"
MANUAL_KINDS = ("deposit", "withdrawal", "manual_set")
TRADING_KINDS = ("fee", "trade_pnl")
MAX_TICK_STEP = 5
LOCK_TIMEOUT_MS = 200

#: How often each operation is drawn (relative weights). Faults are rarer: they cost a process or a restart.
WEIGHTS: dict[str, int] = {
    "tick": 26, "duplicate_tick": 6, "overlapping_tick": 2, "kill_9": 2,
    "deposit": 12, "withdraw": 8, "set": 5, "key_reuse_same": 5, "key_reuse_different": 4,
    "concurrent_key_reuse": 3, "read": 16, "lock_held": 2, "db_restart": 1, "switch_strategy": 2,
}
FAULTS = ("duplicate_tick", "overlapping_tick", "kill_9", "kill_9_landed", "key_reuse_same", "key_reuse_different",
          "concurrent_key_reuse", "lock_held", "db_restart", "refused_change")


class SimFailure(AssertionError):
    """A check failed: the seed and step reproduce it."""

    def __init__(self, seed: int, step: int, message: str, db: str) -> None:
        super().__init__(f"seed {seed} step {step}: {message}")
        self.seed, self.step, self.message, self.db = seed, step, message, db

    def line(self) -> str:
        return (f"FAIL seed={self.seed} step={self.step}: {self.message} "
                f"(reproduce: python -m sim --seed {self.seed} --steps {self.step + 1} --db {self.db})")


# ------------------------------------------------------------------------------------------------ the model

_CTX = Context(prec=60, rounding=ROUND_HALF_EVEN)
_Q18 = Decimal(1).scaleb(-18)
_Q8 = Decimal(1).scaleb(-8)


def _q18(x: Decimal) -> Decimal:
    return x.quantize(_Q18, context=_CTX)


def _q8(x: Decimal) -> Decimal:
    return x.quantize(_Q8, context=_CTX)


@dataclass
class Model:
    """What the account must hold, restated independently of ``chalicelib``: money (total = cash + cost of open
    positions, reserved = their cost, available = total − reserved ≥ 0), units (a flow F issues F / V units at the
    value per unit V and leaves V and the peak alone; trading moves V, never the units; into an empty account a
    flow starts a new series at V = 1; a flow that empties the account redeems every unit), the manual rows and
    idempotency keys applied, and the candle cursor (never moves back)."""

    total: Decimal = Decimal(0)
    available: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    units: Decimal = Decimal(0)
    unit_value: Decimal = Decimal(1)
    peak: Decimal = Decimal(1)
    positions_value: Decimal = Decimal(0)  # open positions marked at the last close (at cost before any candle)
    cursor: datetime | None = None
    strategy: str = STRATEGIES[0]
    last_id: int = 0
    manual_rows: int = 0
    tick_rows: int = 0
    #: Idempotency-Key → (payload, response body) of the change it applied.
    keys: dict[str, tuple[dict[str, str], dict[str, Any]]] = field(default_factory=dict)

    @property
    def equity(self) -> Decimal:
        return self.available + self.positions_value

    def expect(self, op: str, amount: Decimal) -> Decimal | None:
        """The delta this change applies, or None when it must be refused (insufficient funds)."""
        if op == "deposit":
            return amount
        if op == "withdraw":
            return -amount if self.available - amount >= 0 else None
        return amount - self.total if amount - self.reserved >= 0 else None  # set

    def flow(self, delta: Decimal) -> None:
        before = self.equity
        after = before + delta
        if self.units <= 0 or self.unit_value <= 0:
            if after > 0:
                self.units, self.unit_value, self.peak = _q18(after), Decimal(1), Decimal(1)
            else:
                self.units = Decimal(0)
        elif after == 0:
            self.units = Decimal(0)
        else:
            self.units = _q18(_CTX.add(self.units, _CTX.divide(delta, self.unit_value)))
        self.total += delta
        self.available += delta


@dataclass
class Event:
    """An accepted change or a switch, with the candle cursor it was applied after (for the reference run)."""

    cursor: datetime | None
    kind: str  # "post" or "switch"
    payload: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    strategy: str = ""


@dataclass
class Summary:
    seed: int
    steps: int
    db: str
    ops: Counter[str]
    verifies: int
    model_checks: int
    candles: int
    ledger_rows: int
    seconds: float

    def describe(self) -> str:
        faults = ", ".join(f"{k} {self.ops[k]}" for k in FAULTS)
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items()))
        return (f"PASS seed={self.seed} db={self.db}: {self.steps} steps in {self.seconds / 60:.1f} min; "
                f"faults: {faults}; operations: {ops}; model checks {self.model_checks}, verify runs "
                f"{self.verifies}, final reference comparison 1; {self.candles} candles applied, "
                f"{self.ledger_rows} ledger rows")


@dataclass
class FakeRequest:
    raw_body: bytes
    headers: Any
    query_params: dict[str, str] | None = None


# ------------------------------------------------------------------------------------------------ databases


@contextmanager
def _database(kind: str, workdir: Path) -> Iterator[tuple[str, Any]]:
    """A fresh migrated database: a SQLite file, or PostgreSQL on the simulator's own throwaway cluster (never the
    shared server: the simulator restarts it). Yields (url, cluster or None)."""
    from chalicelib.db.engine import dispose_engines, get_engine
    from chalicelib.db.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'sim.sqlite3'}"
        upgrade(get_engine(url))
        yield url, None
        dispose_engines()
        return
    sys.path.insert(0, str(ROOT / "tests"))
    import atb_testing

    cluster = atb_testing.ThrowawayCluster()
    cluster.port = atb_testing.free_port()
    try:
        admin = cluster.start()
        for _ in range(100):
            if atb_testing._can_connect(admin):
                break
            time.sleep(0.1)
        url = atb_testing.create_database(admin, "atb_sim")
        upgrade(get_engine(url))
        yield url, cluster
    finally:
        dispose_engines()
        cluster.stop()


def _snapshot(engine: Any) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests" / "engine"))
    from engine_testing import snapshot

    return dict(snapshot(engine))


# ------------------------------------------------------------------------------------------------ the simulator


class Simulator:
    def __init__(self, seed: int, db: str, url: str, cluster: Any, workdir: Path, *, verify_every: int,
                 symbol: str = SYMBOL) -> None:
        import random

        from chalicelib.trading.feeds import ReplayFeed
        from chalicelib.trading.symbols import split_pairs

        self.seed, self.db, self.url, self.cluster, self.workdir = seed, db, url, cluster, workdir
        self.rng = random.Random(seed)
        self.verify_every = verify_every
        #: the bot's pairs, comma-joined (one wallet trading every bundled pair given)
        self.symbol = symbol
        self.feed = ReplayFeed.several(split_pairs(symbol), TIMEFRAME)
        self.model = Model()
        self.events: list[Event] = []
        self.ops: Counter[str] = Counter()
        self.step = 0
        self.verifies = 0
        self.model_checks = 0
        self.key_counter = 0
        self.last_now: datetime | None = None
        self.session_id = 0

    # --- plumbing ---------------------------------------------------------------------------------------------

    def fail(self, message: str) -> SimFailure:
        return SimFailure(self.seed, self.step, message, self.db)

    @property
    def engine(self) -> Any:
        from chalicelib.db.engine import get_engine

        return get_engine(self.url)

    def start(self) -> None:
        from chalicelib.bot.runner import replay_clock
        from chalicelib.bot.sessions import open_session
        from chalicelib.bots import BotSpec

        first_close = replay_clock(self.feed, self.symbol, TIMEFRAME)(None)
        assert first_close is not None
        spec = BotSpec(strategy=STRATEGIES[0], symbol=self.symbol, timeframe=TIMEFRAME, exchange="replay")
        self.session_id = open_session(self.engine, spec, initial_balance=INITIAL,
                                       market_time=first_close - HOUR).session_id
        self.observe()

    def request(self, payload: dict[str, str] | None = None, key: str | None = None,
                token: str = WRITE_TOKEN) -> FakeRequest:
        from chalice.app import CaseInsensitiveMapping

        from chalicelib.jsonutil import dumps

        headers = {"Authorization": f"Bearer {token}"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        raw = dumps(payload).encode() if payload is not None else b""
        return FakeRequest(raw, CaseInsensitiveMapping(headers))

    def post(self, payload: dict[str, str], key: str | None) -> tuple[int, dict[str, Any], bool]:
        from chalicelib.api import handlers
        from chalicelib.jsonutil import loads_exact

        response = handlers.post_balance(self.request(payload, key))
        replayed = response.headers.get(handlers.REPLAY_HEADER) == "true"
        return response.status_code, loads_exact(response.body), replayed

    def get_balance(self) -> tuple[int, dict[str, Any]]:
        from chalicelib.api import handlers
        from chalicelib.jsonutil import loads_exact

        response = handlers.get_balance(self.request(token=READ_TOKEN))
        return response.status_code, loads_exact(response.body)

    def tick(self, clock: Any) -> str:
        """One tick in this process; a database refusal (SQLite's writer lock held past the timeout) is "busy"."""
        from chalicelib.bot.tick import tick_session
        from chalicelib.db.errors import describe

        try:
            result = tick_session(self.engine, self.session_id, self.feed, clock=clock)
        except Exception as exc:
            problem = describe(exc)
            if problem is None or problem.kind not in ("busy", "unavailable"):
                raise self.fail(f"tick raised {type(exc).__name__}: {str(exc)[:160]}") from exc
            return problem.kind
        if result.status == "applied":
            assert result.cursor is not None
            self.last_now = result.cursor + HOUR
        return result.status

    def worker(self, when: int | datetime, kill_at: int = 0) -> subprocess.Popen[str]:
        """A tick in a separate process: ``when`` is a "now", or a number of recorded candles after the cursor."""
        now = when.isoformat() if isinstance(when, datetime) else str(when)
        args = [sys.executable, "-m", "sim.worker", self.url, str(self.session_id), now, str(kill_at),
                str(self.workdir / "kill-note.txt"), self.symbol]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def new_key(self) -> str:
        self.key_counter += 1
        return f"sim-{self.seed}-{self.key_counter}"

    def amount(self) -> Decimal:
        if self.rng.random() < 0.3:
            return Decimal(self.rng.randint(1, 300_000_000_000)) / 10**8
        return Decimal(self.rng.randint(1, 500_000)) / 100

    def payload(self, op: str) -> tuple[dict[str, str], Decimal]:
        m = self.model
        if op == "deposit":
            amount = self.amount()
            body = {"amount": str(amount)}
        elif op == "withdraw":
            if self.rng.random() < 0.15 or m.available <= 0:
                amount = m.available + self.amount()  # more than the cash: refused
            else:
                amount = max(_q8(m.available * Decimal(self.rng.randint(1, 100)) / 100), Decimal("0.01"))
            body = {"amount": str(-amount)}
        else:
            roll = self.rng.random()
            if roll < 0.05 and m.reserved == 0:
                amount = Decimal(0)  # empties the account: every unit redeemed
            elif roll < 0.15 and m.reserved > 0:
                amount = _q8(m.reserved * Decimal(self.rng.randint(1, 99)) / 100)  # below the reservation: refused
            else:
                amount = m.reserved + self.amount()
            body = {"balance": str(amount)}
        body["reason"] = f"sim step {self.step} {op}"
        return body, amount

    @staticmethod
    def op_of(payload: dict[str, str]) -> tuple[str, Decimal]:
        if "balance" in payload:
            return "set", Decimal(payload["balance"])
        amount = Decimal(payload["amount"])
        return ("deposit", amount) if amount > 0 else ("withdraw", -amount)

    # --- observing the database against the model ---------------------------------------------------------------

    def observe(self, *, trading: bool = False, expected: list[tuple[str, Decimal, str | None]] | None = None,
                switch: str | None = None) -> None:
        """Read what changed since the last step and check it against the model: only a tick may add trading rows
        and tick rows; exactly the ``expected`` manual changes (kind, delta, reference) appear, in order, each with
        the units the model computes; the session's cached money and units equal the model's."""
        from sqlalchemy import func, select

        from chalicelib.db.models import AccountBalance, Position, TickLog, TradingSession
        from chalicelib.db.uow import read_transaction

        m, expected = self.model, list(expected or [])
        with read_transaction(self.engine) as db:
            s = db.get(TradingSession, self.session_id)
            assert s is not None
            rows = list(db.execute(select(AccountBalance).where(AccountBalance.id > m.last_id)
                                   .order_by(AccountBalance.id)).scalars())
            positions = list(db.execute(select(Position).where(Position.session_id == self.session_id,
                                                               Position.status == "open")).scalars())
            manual = db.execute(select(func.count()).where(AccountBalance.kind.in_(MANUAL_KINDS))).scalar_one()
            ticks = db.execute(select(func.count()).select_from(TickLog)).scalar_one()
        self.model_checks += 1
        for row in rows:
            where = f"ledger row #{row.id} ({row.kind} {row.delta})"
            if row.total_balance != m.total + row.delta:
                raise self.fail(f"{where}: balance {row.total_balance} is not {m.total} + {row.delta}")
            if row.available_balance != row.total_balance - row.reserved_balance or row.available_balance < 0:
                raise self.fail(f"{where}: available {row.available_balance} is not total − reserved ≥ 0")
            if row.kind in TRADING_KINDS:
                if not trading:
                    raise self.fail(f"{where}: a trading row appeared without a tick")
                if row.units != m.units:
                    raise self.fail(f"{where}: trading moved the units {m.units} → {row.units}")
                m.total, m.reserved, m.available = row.total_balance, row.reserved_balance, row.available_balance
            elif row.kind in MANUAL_KINDS:
                if not expected:
                    raise self.fail(f"{where}: a change nobody made (applied twice, or a refused one applied)")
                kind, delta, reference = expected.pop(0)
                if (row.kind, row.delta, row.reference) != (kind, delta, reference):
                    raise self.fail(f"{where}: expected {kind} {delta} reference {reference}, got {row.kind} "
                                    f"{row.delta} reference {row.reference}")
                if row.reserved_balance != m.reserved:
                    raise self.fail(f"{where}: a capital flow moved the reservation")
                equity_before = m.equity
                value_before = m.unit_value
                m.flow(delta)
                m.manual_rows += 1
                if row.units != m.units:
                    raise self.fail(f"{where}: units {row.units}, the model says {m.units}")
                if row.equity != equity_before + delta:
                    raise self.fail(f"{where}: equity {row.equity} is not {equity_before} + {delta}")
                if m.units > 0 and value_before == m.unit_value and row.unit_value != value_before:
                    raise self.fail(f"{where}: a flow moved the value per unit {value_before} → {row.unit_value}")
            elif row.kind == "strategy_switch":
                if switch is None or row.delta != 0:
                    raise self.fail(f"{where}: an unexpected strategy switch row")
                switch = None
            elif row.kind == "initial" and m.last_id == 0:
                if (row.delta, row.units, row.unit_value) != (INITIAL, INITIAL, Decimal(1)):
                    raise self.fail(f"{where}: the first capital is not {INITIAL} in {INITIAL} units at 1")
                m.total = m.available = row.total_balance
                m.units = row.units
            else:
                raise self.fail(f"{where}: an unexpected ledger row")
            m.last_id = row.id
        if expected:
            raise self.fail(f"an accepted change is missing from the ledger: {expected[0]}")
        if switch is not None:
            raise self.fail("the strategy switch left no ledger row")
        if manual != m.manual_rows:
            raise self.fail(f"{manual} manual ledger rows, the model counted {m.manual_rows}")
        if not trading and ticks != m.tick_rows:
            raise self.fail(f"{ticks - m.tick_rows} tick rows appeared without a tick")
        if ticks < m.tick_rows:
            raise self.fail("tick rows disappeared")
        if (s.total_balance, s.available_balance, s.reserved_balance, s.units) != (m.total, m.available,
                                                                                   m.reserved, m.units):
            raise self.fail(f"session: total/available/reserved/units {s.total_balance}/{s.available_balance}/"
                            f"{s.reserved_balance}/{s.units}, model {m.total}/{m.available}/{m.reserved}/{m.units}")
        if sum((p.cost for p in positions), Decimal(0)) != s.reserved_balance:
            raise self.fail("reserved balance is not the cost of the open positions")
        if m.cursor is not None and (s.candle_cursor is None or s.candle_cursor < m.cursor):
            raise self.fail(f"the candle cursor moved back: {m.cursor} → {s.candle_cursor}")
        if not trading and s.candle_cursor != m.cursor:
            raise self.fail("the candle cursor moved without a tick")
        if s.strategy != m.strategy:
            raise self.fail(f"strategy {s.strategy}, the model says {m.strategy}")
        moved = s.candle_cursor != m.cursor
        traded = any(r.kind in TRADING_KINDS for r in rows) or ticks != m.tick_rows
        if traded and not moved:
            raise self.fail("trading or tick rows were written without the cursor moving (a partial tick)")
        m.tick_rows = ticks
        m.cursor = s.candle_cursor
        # each position at its pair's mark (money scale), at cost before its pair has one
        m.positions_value = sum((_q8(p.quantity * s.marks[p.symbol].close) if p.symbol in s.marks else p.cost
                                 for p in positions), Decimal(0))
        if moved:  # each candle's mark moved the value per unit to E / U; the units did not move
            if m.units > 0 and s.unit_value != _q18(_CTX.divide(m.equity, m.units)):
                raise self.fail(f"value per unit {s.unit_value} is not equity {m.equity} / units {m.units}")
            if s.peak_unit_value < max(m.peak, s.unit_value):
                raise self.fail(f"the peak value per unit fell: {m.peak} → {s.peak_unit_value}")
            m.unit_value, m.peak = s.unit_value, s.peak_unit_value
        elif (s.unit_value, s.peak_unit_value) != (m.unit_value, m.peak):
            raise self.fail(f"value per unit/peak {s.unit_value}/{s.peak_unit_value} moved without a candle "
                            f"(model {m.unit_value}/{m.peak})")
        if m.units > 0 and _q8(_CTX.multiply(m.units, m.unit_value)) != _q8(m.equity):
            raise self.fail(f"units × value per unit {m.units} × {m.unit_value} is not equity {m.equity}")
        if m.units == 0 and m.equity != 0:
            raise self.fail(f"no units but equity {m.equity}")

    def verify(self) -> None:
        from chalicelib.verify import verify

        report = verify(self.engine)
        self.verifies += 1
        if not report.ok:
            problems = [p for s in report.sessions for p in s.problems]
            raise self.fail(f"verify: {problems[0] if problems else report}")

    # --- operations --------------------------------------------------------------------------------------------

    def do(self, op: str) -> None:
        getattr(self, f"op_{op}")()

    def op_tick(self) -> None:
        from chalicelib.bot.runner import replay_clock

        status = self.tick(replay_clock(self.feed, self.symbol, TIMEFRAME, self.rng.randint(1, MAX_TICK_STEP)))
        if status not in ("applied", "up_to_date", "replay_finished"):
            raise self.fail(f"a lone tick answered {status}")
        self.observe(trading=True)

    def op_duplicate_tick(self) -> None:
        """The same event delivered again (the same "now" as the last applied tick): nothing changes."""
        from chalicelib.bot.tick import fixed_clock

        if self.last_now is None:
            return self.op_tick()
        status = self.tick(fixed_clock(self.last_now))
        if status != "up_to_date":
            raise self.fail(f"a duplicate tick answered {status}, not up_to_date")
        self.observe(trading=False)
        return None

    def op_overlapping_tick(self) -> None:
        """A tick in another process and one here at the same time, for the same "now" (the same scheduled event
        delivered twice at once): whoever wins, every candle up to it is applied once."""
        from chalicelib.bot.runner import replay_clock
        from chalicelib.bot.tick import fixed_clock

        now = replay_clock(self.feed, self.symbol, TIMEFRAME, self.rng.randint(1, MAX_TICK_STEP))(self.model.cursor)
        if now is None:
            return self.op_tick()
        proc = self.worker(now)
        here = self.tick(fixed_clock(now))
        out, err = proc.communicate(timeout=120)
        there = out.strip().splitlines()[-1] if out.strip() else ""
        allowed = {"applied", "up_to_date", "locked", "replay_finished", "busy"}
        if proc.returncode != 0 or there not in allowed or here not in allowed:
            raise self.fail(f"overlapping ticks answered {here!r} and {there!r} (exit {proc.returncode}): "
                            f"{err.strip().splitlines()[-1:] }")
        self.observe(trading=True)
        return None

    def op_kill_9(self) -> None:
        """A tick process SIGKILLed just before its n-th SQL statement (maybe inside its write transaction)."""
        proc = self.worker(self.rng.randint(1, MAX_TICK_STEP), kill_at=self.rng.randint(1, 14))
        _out, err = proc.communicate(timeout=120)
        if proc.returncode not in (0, -9):
            raise self.fail(f"the tick worker exited {proc.returncode}: {err.strip().splitlines()[-1:]}")
        if proc.returncode == -9:
            self.ops["kill_9_landed"] += 1
            self.wait_for_lock()
        self.observe(trading=True)

    def wait_for_lock(self) -> None:
        """Until the server has noticed the dead process and rolled its transaction back (its row lock gone), so
        the next step does not depend on how fast that happens."""
        from sqlalchemy import text

        if self.db != "postgres":
            return
        for _ in range(500):
            try:
                with self.engine.begin() as conn:
                    conn.execute(text("SELECT id FROM trading_sessions WHERE id = :id FOR UPDATE NOWAIT"),
                                 {"id": self.session_id})
                return
            except Exception:
                time.sleep(0.01)
        raise self.fail("the killed tick's row lock was not released within 5 s")

    def _change(self, op: str, key: str | None) -> None:
        payload, amount = self.payload(op)
        self._send(payload, key, self.model.expect(op, amount))

    def _send(self, payload: dict[str, str], key: str | None, delta: Decimal | None) -> None:
        """POST one change the model has judged (``delta``, or None: refused) and check the answer and the ledger."""
        status, body, replayed = self.post(payload, key)
        op, _ = self.op_of(payload)
        if delta is None:
            if status != 409 or body.get("error", {}).get("code") != "insufficient_funds":
                raise self.fail(f"{op} {payload} beyond the funds answered {status} {body}")
            self.ops["refused_change"] += 1
            self.observe()
            return
        if status != 201 or replayed:
            raise self.fail(f"{op} {payload} (key {key}) answered {status}{' replayed' if replayed else ''} {body}")
        if Decimal(str(body["current_balance"])) != self.model.total + delta:
            raise self.fail(f"{op} answered balance {body['current_balance']}, model {self.model.total + delta}")
        self._accepted(payload, key, delta, body)

    def _accepted(self, payload: dict[str, str], key: str | None, delta: Decimal, body: dict[str, Any]) -> None:
        kind = {"set": "manual_set", "deposit": "deposit", "withdraw": "withdrawal"}[self.op_of(payload)[0]]
        reference = f"request:{WRITER}:{key}" if key else None
        self.events.append(Event(self.model.cursor, "post", payload, key))
        self.observe(expected=[(kind, delta, reference)])
        if key is not None:
            self.model.keys[key] = (payload, body)

    def op_deposit(self) -> None:
        self._change("deposit", self.new_key() if self.rng.random() < 0.5 else None)

    def op_withdraw(self) -> None:
        self._change("withdraw", self.new_key() if self.rng.random() < 0.5 else None)

    def op_set(self) -> None:
        self._change("set", self.new_key() if self.rng.random() < 0.5 else None)

    def _old_key(self) -> str | None:
        if not self.model.keys:
            return None
        return self.rng.choice(sorted(self.model.keys))

    def op_key_reuse_same(self) -> None:
        """A retry with the same key and body: the first answer again, nothing applied."""
        key = self._old_key()
        if key is None:
            return self.op_deposit()
        payload, first = self.model.keys[key]
        status, body, replayed = self.post(payload, key)
        if status != 201 or not replayed or body != first:
            raise self.fail(f"a retry with key {key} answered {status} replayed={replayed}, not the first answer")
        self.observe()
        return None

    def op_key_reuse_different(self) -> None:
        """The same key with a different body: 422, nothing applied."""
        key = self._old_key()
        if key is None:
            return self.op_withdraw()
        payload, _ = self.model.keys[key]
        other = dict(payload)
        field_name = "balance" if "balance" in other else "amount"
        other[field_name] = str(Decimal(other[field_name]) + Decimal("0.01"))
        status, body, _ = self.post(other, key)
        if status != 422 or body.get("error", {}).get("code") != "idempotency_key_reused":
            raise self.fail(f"key {key} reused for another change answered {status} {body}")
        self.observe()
        return None

    def op_concurrent_key_reuse(self) -> None:
        """Two threads send the same change with one new key at once: it is applied once."""
        op = self.rng.choice(["deposit", "withdraw", "set"])
        payload, amount = self.payload(op)
        key = self.new_key()
        delta = self.model.expect(op, amount)
        barrier = threading.Barrier(2)
        answers: list[tuple[int, dict[str, Any], bool]] = []
        lock = threading.Lock()

        def send() -> None:
            barrier.wait()
            answer = self.post(payload, key)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if len(answers) != 2:
            raise self.fail("a concurrent request did not answer")
        statuses = sorted((s, r) for s, _, r in answers)
        if delta is None:
            if statuses != [(409, False), (409, False)]:
                raise self.fail(f"two refused changes with one key answered {statuses}")
            self.ops["refused_change"] += 1
            self.observe()
            return
        fresh = [b for s, b, r in answers if s == 201 and not r]
        replays = [b for s, b, r in answers if s == 201 and r]
        busy = [b for s, b, _ in answers if s == 503]
        if len(fresh) + len(replays) + len(busy) != 2 or len(fresh) > 1 or (replays and not fresh):
            raise self.fail(f"one key sent twice at once answered {statuses}")
        if any(b != fresh[0] for b in replays):
            raise self.fail("the replayed answer differs from the first")
        if fresh:
            self._accepted(payload, key, delta, fresh[0])
        else:
            self.observe()

    def op_read(self) -> None:
        """GET /api/balance: internally consistent and equal to the model."""
        status, body = self.get_balance()
        m = self.model
        if status != 200:
            raise self.fail(f"GET /api/balance answered {status} {body}")
        got = {k: Decimal(str(body[k])) for k in ("current_balance", "available_balance", "reserved_balance",
                                                   "units", "unit_value", "equity")}
        want = {"current_balance": m.total, "available_balance": m.available, "reserved_balance": m.reserved,
                "units": m.units, "unit_value": m.unit_value, "equity": m.equity}
        if got != want:
            raise self.fail(f"GET /api/balance {got} differs from the model {want}")
        newest = body["recent_history"][0]
        if Decimal(str(newest["balance_after"])) != got["current_balance"]:
            raise self.fail("current_balance is not the newest history row's balance_after")
        if got["units"] > 0 and _q8(_CTX.multiply(got["units"], got["unit_value"])) != got["equity"]:
            raise self.fail("GET /api/balance: units × value per unit is not the equity")
        if body["strategy"] != m.strategy:
            raise self.fail(f"GET /api/balance: strategy {body['strategy']}, model {m.strategy}")
        self.observe()  # and a read changed nothing

    def op_lock_held(self) -> None:
        """Another connection holds the account row lock past the lock timeout: a POST answers 503 busy and is not
        applied, a read still answers, a tick skips; after the lock is released a retry with the key applies once."""
        from sqlalchemy import text

        from chalicelib.bot.runner import replay_clock
        from chalicelib.db.engine import WRITE_OPTION

        op = self.rng.choice(["deposit", "withdraw", "set"])
        payload, amount = self.payload(op)
        key = self.new_key() if self.rng.random() < 0.7 else None
        holder = self.engine.execution_options(**{WRITE_OPTION: True}).connect()
        try:
            transaction = holder.begin()
            holder.execute(text("SELECT id FROM trading_sessions WHERE id = :id FOR UPDATE"
                                if self.db == "postgres" else "SELECT id FROM trading_sessions WHERE id = :id"),
                           {"id": self.session_id})
            status, body, _ = self.post(payload, key)
            if status != 503 or body.get("error", {}).get("code") != "busy":
                raise self.fail(f"a change against a held lock answered {status} {body}")
            read_status, _ = self.get_balance()
            if read_status != 200:
                raise self.fail(f"a read while the lock was held answered {read_status}")
            ticked = self.tick(replay_clock(self.feed, self.symbol, TIMEFRAME, 1))
            if ticked not in ("locked", "busy", "replay_finished"):
                raise self.fail(f"a tick against a held lock answered {ticked}")
            transaction.rollback()
        finally:
            holder.close()
        self.observe()
        if key is not None:
            self._send(payload, key, self.model.expect(op, amount))

    def op_db_restart(self) -> None:
        """PostgreSQL stops and starts again (the simulator's own cluster): a change sent while it is down answers
        503 and is not applied; the retry with its key after the restart applies once. SQLite: every pooled
        connection is dropped (the nearest thing to a restart)."""
        from chalicelib.db.engine import dispose_engines

        if self.cluster is None:
            dispose_engines()
            self.observe()
            return
        payload, amount = self.payload("deposit")
        key = self.new_key()
        self.cluster.pause()
        try:
            status, body, _ = self.post(payload, key)
            if status != 503:
                raise self.fail(f"a change while the database was down answered {status} {body}")
            read_status, _ = self.get_balance()
            if read_status != 503:
                raise self.fail(f"a read while the database was down answered {read_status}")
        finally:
            self.cluster.resume()
        self.observe()
        self._send(payload, key, self.model.expect("deposit", amount))

    def op_switch_strategy(self) -> None:
        from chalicelib.bot.sessions import switch_strategy

        new = STRATEGIES[1] if self.model.strategy == STRATEGIES[0] else STRATEGIES[0]
        switch_strategy(self.engine, self.session_id, new)
        self.events.append(Event(self.model.cursor, "switch", strategy=new))
        self.model.strategy = new
        self.observe(switch=new)

    # --- the end -----------------------------------------------------------------------------------------------

    def reference_run(self) -> dict[str, Any]:
        """One uninterrupted run into a fresh database: the same candles, and the same accepted changes and switches
        at the same candle cursors, one after the other."""
        from chalicelib.bot.runner import replay_clock
        from chalicelib.bot.sessions import open_session, switch_strategy
        from chalicelib.bot.tick import fixed_clock, tick_session
        from chalicelib.bots import BotSpec
        from chalicelib.db.engine import get_engine
        from chalicelib.db.migrate import upgrade

        url = f"sqlite:///{self.workdir / 'reference.sqlite3'}"
        engine = get_engine(url)
        upgrade(engine)
        first_close = replay_clock(self.feed, self.symbol, TIMEFRAME)(None)
        assert first_close is not None
        spec = BotSpec(strategy=STRATEGIES[0], symbol=self.symbol, timeframe=TIMEFRAME, exchange="replay")
        sid = open_session(engine, spec, initial_balance=INITIAL, market_time=first_close - HOUR).session_id
        cursor: list[datetime | None] = [None]

        def advance(to: datetime | None) -> None:
            if to is None:
                return
            if cursor[0] is None:
                cursor[0] = tick_session(engine, sid, self.feed, clock=replay_clock(self.feed, self.symbol, TIMEFRAME,
                                                                                     1)).cursor
            while cursor[0] is not None and cursor[0] < to:
                result = tick_session(engine, sid, self.feed, clock=fixed_clock(to + HOUR))
                if result.status != "applied":
                    raise self.fail(f"reference run: tick answered {result.status}")
                cursor[0] = result.cursor
            if cursor[0] != to:
                raise self.fail(f"reference run: the cursor reached {cursor[0]}, not {to}")

        saved = os.environ["DATABASE_URL"]
        os.environ["DATABASE_URL"] = url  # the handlers use the configured database
        try:
            for event in self.events:
                advance(event.cursor)
                if event.kind == "switch":
                    switch_strategy(engine, sid, event.strategy)
                    continue
                status, body, _ = self.post(event.payload, event.key)
                if status != 201:
                    raise self.fail(f"reference run: {event.payload} answered {status} {body}")
            advance(self.model.cursor)
            return _snapshot(engine)
        finally:
            os.environ["DATABASE_URL"] = saved

    def finish(self) -> None:
        self.verify()
        got, want = _snapshot(self.engine), self.reference_run()
        for part in ("ledger", "positions", "trades", "ticks", "sessions"):
            if got[part] != want[part]:
                rows = list(zip(got[part], want[part], strict=False))
                index = next((i for i, (a, b) in enumerate(rows) if a != b), len(rows))
                detail = (f"row {index}: {rows[index][0]} vs the reference's {rows[index][1]}" if index < len(rows)
                          else f"{len(got[part])} rows vs the reference's {len(want[part])}")
                raise self.fail(f"the final {part} differ from one uninterrupted run: {detail}")


def run(seed: int, steps: int, db: str, *, verify_every: int = 25, progress_every: int = 500, symbol: str = SYMBOL,
        out: Callable[[str], None] = lambda line: print(line, flush=True)) -> Summary:
    """Run ``steps`` operations drawn from ``seed`` on a fresh database of kind ``db``; raise :class:`SimFailure`
    at the first failed check."""
    import logging

    from chalicelib.bot.observability import logger

    started = time.monotonic()
    # The engine's and the API's log lines (every refused request, every request during a restart, the pool's
    # failed closes of killed connections) would bury the progress: the simulator checks the outcomes instead.
    logger.setLevel("CRITICAL")
    for name in ("atb.api", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    workdir = Path(tempfile.mkdtemp(prefix="atb-sim-"))
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "DATABASE_LOCK_TIMEOUT_MS", "ATB_API_TOKENS")}
    os.environ["DATABASE_LOCK_TIMEOUT_MS"] = str(LOCK_TIMEOUT_MS)
    os.environ["ATB_API_TOKENS"] = f"dashboard:read:{READ_TOKEN},{WRITER}:write:{WRITE_TOKEN}"
    ops, weights = zip(*WEIGHTS.items(), strict=True)
    try:
        with _database(db, workdir) as (url, cluster):
            os.environ["DATABASE_URL"] = url
            sim = Simulator(seed, db, url, cluster, workdir, verify_every=verify_every, symbol=symbol)
            sim.start()
            for step in range(steps):
                sim.step = step
                op = sim.rng.choices(ops, weights)[0]
                sim.ops[op] += 1
                try:
                    sim.do(op)
                    if verify_every and (step + 1) % verify_every == 0:
                        sim.verify()
                except SimFailure:
                    raise
                except Exception as exc:
                    raise sim.fail(f"{op} raised {type(exc).__name__}: {str(exc)[:200]}") from exc
                if progress_every and (step + 1) % progress_every == 0:
                    faults = ", ".join(f"{k} {sim.ops[k]}" for k in FAULTS if sim.ops[k])
                    out(f"step {step + 1}/{steps} ({(time.monotonic() - started) / 60:.1f} min): cursor "
                        f"{sim.model.cursor}, balance {sim.model.total}; faults: {faults}; verify runs "
                        f"{sim.verifies}")
            sim.step = steps
            sim.finish()
            snap = _snapshot(sim.engine)
            return Summary(seed, steps, db, sim.ops, sim.verifies, sim.model_checks, len(snap["ticks"]),
                           len(snap["ledger"]), time.monotonic() - started)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(workdir, ignore_errors=True)
