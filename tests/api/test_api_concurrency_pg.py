"""50 concurrent POST /api/balance requests interleaved with real ticks on PostgreSQL: nothing lost, nothing
counted twice, the ledger adds up (promise 3).

The requests call the route handler directly from threads: Chalice keeps ``app.current_request`` on the app
object, so one ``chalice.test.Client`` per thread would still share it; the handler takes the request explicitly.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from api_helpers import WRITE_TOKEN, body
from chalice.app import CaseInsensitiveMapping
from sqlalchemy import Engine, func, select

from chalicelib.api import handlers
from chalicelib.bot.runner import replay_clock
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.models import AccountBalance, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.jsonutil import loads_exact
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.verify import verify

START = datetime(2023, 1, 20, tzinfo=UTC)  # inside the bundled candles, after the strategies' warm-up


@dataclass
class FakeRequest:
    raw_body: bytes
    headers: CaseInsensitiveMapping = field(default_factory=lambda: CaseInsensitiveMapping({}))
    query_params: dict[str, str] | None = None


def _request(payload: dict[str, Any], key: str | None = None) -> FakeRequest:
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return FakeRequest(body(payload), CaseInsensitiveMapping(headers))


def test_50_concurrent_changes_interleaved_with_ticks_leave_the_ledger_consistent(pg_engine: Engine) -> None:
    spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="replay")
    sid = open_session(pg_engine, spec, initial_balance=Decimal("10000"), start_cursor=START).session_id
    feed = ReplayFeed()
    clock = replay_clock(feed, "BTCUSDT", "1h", step=12)
    rng = random.Random(4)
    payloads: list[tuple[dict[str, Any], str | None]] = []
    for i in range(50):
        op = i % 3
        if op == 0:
            payload: dict[str, Any] = {"balance": str(Decimal(rng.randint(500_000, 2_000_000)) / 100)}
        elif op == 1:
            payload = {"amount": str(Decimal(rng.randint(1, 100_000_000)) / 10**4)}
        else:
            payload = {"amount": str(-Decimal(rng.randint(1, 300_000)) / 100)}
        payload["reason"] = f"concurrent change {i}"
        # every fifth request is sent twice with the same key: the retry must not count twice
        payloads.append((payload, f"key-{i}" if i % 5 == 0 else None))

    barrier = threading.Barrier(len(payloads) + (len(payloads) // 5) + 1)
    responses: list[tuple[int, dict[str, Any], str | None]] = []
    ticks: list[str] = []
    lock = threading.Lock()

    def post(payload: dict[str, Any], key: str | None) -> None:
        barrier.wait()
        response = handlers.post_balance(_request(payload, key))
        with lock:
            responses.append((response.status_code, loads_exact(response.body), key))

    posts_done = threading.Event()

    def tick_loop() -> None:
        """Tick while the requests run (a tick skips a session another transaction holds), then a few more."""
        barrier.wait()
        while not posts_done.is_set() or ticks.count("applied") < 10:
            status = tick_session(pg_engine, sid, feed, clock=clock).status
            ticks.append(status)
            if status == "locked":
                threading.Event().wait(0.002)

    threads = [threading.Thread(target=post, args=p) for p in payloads]
    threads += [threading.Thread(target=post, args=p) for p in payloads if p[1]]
    ticker = threading.Thread(target=tick_loop)
    for t in [*threads, ticker]:
        t.start()
    for t in threads:
        t.join(timeout=120)
    posts_done.set()
    ticker.join(timeout=120)
    assert not any(t.is_alive() for t in [*threads, ticker])

    assert len(responses) == 60
    statuses = [status for status, _, _ in responses]
    assert set(statuses) <= {201, 409}, [r for r in responses if r[0] not in (201, 409)]
    assert statuses.count(201) >= 30
    assert "applied" in ticks  # the ticks really ran in between
    created = {r["entry"]["id"] for status, r, _ in responses if status == 201}
    for key in {k for _, _, k in responses if k}:
        same = [(s, r) for s, r, k in responses if k == key]
        assert len({s for s, _ in same}) == 1  # both tries got the same answer
        if same[0][0] == 201:
            assert same[0][1] == same[1][1]

    with read_transaction(pg_engine) as db:
        session = db.get(TradingSession, sid)
        assert session is not None
        deltas = db.execute(select(func.sum(AccountBalance.delta)).where(AccountBalance.session_id == sid)).scalar()
        manual = set(db.execute(select(AccountBalance.id).where(
            AccountBalance.session_id == sid,
            AccountBalance.kind.in_(["manual_set", "deposit", "withdrawal"]))).scalars())
        trading = db.execute(select(func.count()).where(
            AccountBalance.session_id == sid, AccountBalance.kind.in_(["fee", "trade_pnl"]))).scalar()
    assert session.total_balance == deltas
    assert manual == created  # every accepted change is in the ledger once, nothing else is
    assert trading > 0  # the ticks traded while the changes came in
    report = verify(pg_engine)
    assert report.ok, [s.problems for s in report.sessions]
