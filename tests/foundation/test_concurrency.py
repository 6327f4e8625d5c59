"""No lost update: many writers on one session at once give the result of running them one after another."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

from sqlalchemy import Engine, select

from chalicelib import ledger
from chalicelib.balances import change_balance, read_summary
from chalicelib.db.models import AccountBalance
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.verify import verify

THREADS = 8
OPS_PER_THREAD = 50


def test_eight_concurrent_writers_lose_no_update(engine: Engine) -> None:
    with write_transaction(engine) as db:
        sid = ledger.start_session(db, strategy="ml_basic", symbol="BTCUSDT", timeframe="1h", exchange="binance",
                                   mode="paper", initial_balance=Decimal("100000")).id

    # Each operation carries a unique key so the ledger row can be traced back to the operation it came from.
    plans: dict[str, tuple[str, Decimal]] = {}
    rng = random.Random(7)
    for t in range(THREADS):
        for i in range(OPS_PER_THREAD):
            op = rng.choice(["deposit", "withdraw", "set"])
            amount = Decimal(rng.randint(1, 10_000)) / 100
            if op == "set":
                amount = Decimal(rng.randint(50_000, 150_000)) + Decimal("0.01") * rng.randint(0, 99)
            plans[f"t{t}-{i}"] = (op, amount)

    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(OPS_PER_THREAD):
                key = f"t{t}-{i}"
                op, amount = plans[key]
                change_balance(op, amount, reason=f"concurrent {op}", actor=Actor(f"thread-{t}"),  # type: ignore[arg-type]
                               idempotency_key=key, engine=engine)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors

    with read_transaction(engine) as db:
        rows = list(db.execute(select(AccountBalance).where(AccountBalance.session_id == sid)
                               .order_by(AccountBalance.id)).scalars())
    assert len(rows) == 1 + THREADS * OPS_PER_THREAD  # every change has its own row
    assert len({r.reference for r in rows[1:]}) == THREADS * OPS_PER_THREAD

    # Replay the operations in the order the ledger serialised them: one writer after another.
    expected = Decimal("100000")
    for row in rows[1:]:
        assert row.reference is not None
        op, amount = plans[row.reference.removeprefix("request:").split(":", 1)[1]]  # request:{actor}:{key}
        expected = amount if op == "set" else expected + amount if op == "deposit" else expected - amount
        assert row.total_balance == expected, f"row {row.id} lost an update"

    session = read_summary(sid, engine=engine).session
    assert session.total_balance == expected == sum((r.delta for r in rows), Decimal(0))
    assert verify(engine).ok
