"""API latency with a big ledger: 1,000,000 ledger rows in a fresh PostgreSQL database, then in-process timings
of GET /api/balance, the first and a deep (10,000 rows back) page of history, and POST /api/balance.

Not a test: run it by hand and read the table (target: < 10 ms median each).

    .venv/bin/python bench/api_latency.py [--rows 1000000] [--iterations 300]
        [--admin-url postgresql+pg8000://postgres@127.0.0.1:5432/postgres]

It creates a database named ``atb_bench_<random>``, migrates it, bulk-loads the ledger with COPY (pg8000), and
drops it at the end (also on failure or Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pg8000.native
from sqlalchemy.engine import URL, make_url

TOKEN = "bench-write-token-0123456789abcdef0123"
def _connect(url: str) -> pg8000.native.Connection:
    u = make_url(url)
    return pg8000.native.Connection(user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
                                    port=u.port or 5432, database=u.database or "postgres")


def load(url: str, rows: int) -> tuple[int, Decimal]:
    """A fresh account with ``rows`` consistent ledger rows (units included) over the last ``rows`` minutes."""
    from chalicelib import ledger
    from chalicelib.db.engine import get_engine
    from chalicelib.db.migrate import upgrade
    from chalicelib.db.types import utcnow
    from chalicelib.db.uow import write_transaction

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common

    engine = get_engine(url)
    upgrade(engine)
    first_time = utcnow() - timedelta(minutes=rows + 10)
    with write_transaction(engine) as db:
        session = ledger.start_session(db, strategy="bench", symbol="BTCUSDT", timeframe="1h", exchange="replay",
                                       mode="paper", initial_balance=Decimal("100000"),
                                       now=first_time - timedelta(minutes=1))
        session_id = session.id
    loaded = _common.load_ledger(engine, session_id, rows, spacing=timedelta(minutes=1))
    print(f"loaded {rows:,} ledger rows in {loaded.seconds:.1f} s")
    return session_id, loaded.total


def _time(label: str, call: Callable[[], object], iterations: int) -> tuple[str, float, float]:
    for _ in range(20):
        call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return label, statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def measure(url: str, iterations: int) -> list[tuple[str, float, float]]:
    from chalice.test import Client

    from app import app
    from chalicelib.db.engine import get_engine

    headers = {"Authorization": f"Bearer {TOKEN}"}
    with get_engine(url).connect() as conn:
        from sqlalchemy import text

        deep_cursor = conn.execute(text("SELECT id FROM account_balances ORDER BY id DESC OFFSET 10000 LIMIT 1")
                                   ).scalar_one()
    counter = iter(range(10**9))

    with Client(app) as client:
        def expect(response, status: int = 200) -> None:
            if response.status_code != status:
                raise SystemExit(f"unexpected {response.status_code}: {response.body[:300]!r}")

        def get_balance() -> None:
            expect(client.http.get("/api/balance", headers=headers))

        def first_page() -> None:
            expect(client.http.get("/api/balance/history", headers=headers))

        def deep_page() -> None:
            expect(client.http.get(f"/api/balance/history?before={deep_cursor}", headers=headers))

        def post_balance() -> None:
            payload = json.dumps({"amount": "1.5", "reason": f"bench deposit {next(counter)}"}).encode()
            expect(client.http.post("/api/balance", headers={**headers, "Content-Type": "application/json"},
                                    body=payload), 201)

        return [
            _time("GET /api/balance", get_balance, iterations),
            _time("GET /api/balance/history (first page, 50)", first_page, iterations),
            _time("GET /api/balance/history (10,000 rows deep)", deep_page, iterations),
            _time("POST /api/balance (deposit)", post_balance, iterations),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--admin-url", default=os.environ.get(
        "BENCH_ADMIN_URL", "postgresql+pg8000://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    name = f"atb_bench_{uuid.uuid4().hex[:10]}"
    admin = _connect(args.admin_url)
    admin.run(f'CREATE DATABASE "{name}"')
    admin.close()
    u = make_url(args.admin_url)
    url = URL.create(u.drivername, username=u.username, password=u.password, host=u.host, port=u.port,
                     database=name).render_as_string(hide_password=False)
    os.environ["DATABASE_URL"] = url
    os.environ["ATB_API_TOKENS"] = f"bench:write:{TOKEN}"
    try:
        load(url, args.rows)
        results = measure(url, args.iterations)
        width = max(len(r[0]) for r in results)
        print(f"\n{'endpoint'.ljust(width)}  {'median ms':>10}  {'p95 ms':>8}  (n={args.iterations}, "
              f"in-process via chalice.test.Client, {args.rows:,} ledger rows)")
        for label, median, p95 in results:
            flag = "" if median < 10 else "  <-- over the 10 ms target"
            print(f"{label.ljust(width)}  {median:>10.2f}  {p95:>8.2f}{flag}")
    finally:
        from chalicelib.db.engine import dispose_engines

        dispose_engines()
        admin = _connect(args.admin_url)
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        print(f"dropped {name}")


if __name__ == "__main__":
    main()
