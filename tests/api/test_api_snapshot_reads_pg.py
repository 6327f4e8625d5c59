"""Every read sees one moment (promise 11), on PostgreSQL under 50 concurrent writers.

Each GET /api/balance reads its balance and its recent history in one REPEATABLE READ, READ ONLY transaction, so
the balance always equals the newest history row of the same response; ``atb db verify`` run while the writers
are busy never reports the (correct) ledger as broken. Before reads were one snapshot, 335 of 1,200 responses
disagreed with themselves and verify failed in 5 of 15 runs.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

from api_helpers import READ_TOKEN, WRITE_TOKEN, body, make_starter
from chalice.app import CaseInsensitiveMapping
from sqlalchemy import Engine
from test_api_concurrency_pg import FakeRequest

from chalicelib.api import handlers
from chalicelib.jsonutil import loads_exact
from chalicelib.verify import verify

WRITERS = 50
CHANGES_PER_WRITER = 6
READS = 1000
VERIFIES = 15


def _post(amount: str, i: int) -> int:
    headers = CaseInsensitiveMapping({"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/json"})
    return handlers.post_balance(FakeRequest(body({"amount": amount, "reason": f"writer {i}"}), headers)).status_code


def _get() -> dict[str, Any]:
    headers = CaseInsensitiveMapping({"Authorization": f"Bearer {READ_TOKEN}"})
    while True:  # 503 "busy" (every pooled connection held by the 50 writers): retry as a client would
        response = handlers.get_balance(FakeRequest(b"", headers))
        if response.status_code != 503:
            break
        time.sleep(0.05)
    assert response.status_code == 200, response.body
    return loads_exact(response.body)


def test_reads_and_verify_see_one_moment_while_50_writers_change_the_balance(pg_engine: Engine) -> None:
    make_starter(pg_engine)("100000")
    done = threading.Event()
    statuses: list[int] = []
    torn: list[tuple[Decimal, Decimal]] = []
    reads: list[int] = []
    verdicts: list[bool] = []
    busy: list[int] = []

    def writer(i: int) -> None:
        for k in range(CHANGES_PER_WRITER):
            while True:  # 503 "busy, retry" (lock or pool wait timed out) was not applied: retry as a client would
                status = _post("12.34" if (i + k) % 3 else "-5.67", i)
                if status != 503:
                    break
                busy.append(1)
                time.sleep(0.05)
            statuses.append(status)

    def reader() -> None:
        while len(reads) < READS:
            b = _get()
            reads.append(1)
            if b["current_balance"] != b["recent_history"][0]["balance_after"]:
                torn.append((b["current_balance"], b["recent_history"][0]["balance_after"]))

    def verifier() -> None:
        while not done.is_set() or len(verdicts) < VERIFIES:
            verdicts.append(verify(pg_engine).ok)
            if len(verdicts) >= VERIFIES and done.is_set():
                break

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    others = [threading.Thread(target=reader) for _ in range(4)] + [threading.Thread(target=verifier)]
    for t in [*writers, *others]:
        t.start()
    for t in writers:
        t.join(timeout=300)
    done.set()
    for t in others:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in [*writers, *others])

    assert statuses.count(201) == WRITERS * CHANGES_PER_WRITER  # every change landed
    assert len(reads) >= READS
    assert torn == []  # 0 responses whose balance differs from their own newest history row
    assert len(verdicts) >= VERIFIES and all(verdicts)  # 0 verify failures on a correct ledger under writes
    final = _get()
    changes = [Decimal("12.34") if (i + k) % 3 else Decimal("-5.67")
               for i in range(WRITERS) for k in range(CHANGES_PER_WRITER)]
    assert final["current_balance"] == Decimal("100000") + sum(changes)
