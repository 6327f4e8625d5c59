"""API latency with a big ledger, in-process and under concurrency.

1. A fresh PostgreSQL database gets one active session with 1,000,000 ledger rows (``bench/api_latency.py``'s
   COPY loader, rows a minute apart, so the 24h-change lookup has real history to search).
2. In-process, through ``chalice.test.Client`` (no HTTP), with ``bench/api_latency.py``'s ``measure``: median and
   p95 of GET /api/balance, GET /api/balance/history (first page of 50), the page 10,000 rows deep (keyset
   cursor), and POST /api/balance (a deposit). Target: < 10 ms median each.
3. Under concurrency: ``chalice local --stage local --no-autoreload`` in a subprocess on a free port (its threaded
   dev server; ``ATB_API_TOKENS`` and ``DATABASE_URL`` in its environment), 8 client threads hammering one endpoint
   at a time over HTTP: requests/s, median and p95. After the concurrent deposits the session's balance must equal
   the starting balance plus every deposit (no lost update).

    .venv/bin/python bench/api.py                     # 1,000,000 rows, 300 iterations, 8 workers × 100 requests
    .venv/bin/python bench/api.py --quick             # 20,000 rows, fewer iterations
    .venv/bin/python bench/api.py --rows 100000 --workers 4 --no-concurrency

The database is dropped and the server stopped at the end, also on error and Ctrl-C.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C
import api_latency

TOKEN = api_latency.TOKEN
TOKENS = f"bench:write:{TOKEN}"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
DEPOSIT = Decimal("1.5")


@dataclass
class Result:
    label: str
    samples: list[float]
    seconds: float = 0.0
    errors: int = 0

    @property
    def rate(self) -> float:
        return len(self.samples) / self.seconds if self.seconds else float("nan")


def setup(url: str, rows: int) -> tuple[int, int]:
    """One active session with ``rows`` ledger rows, loaded by ``bench/api_latency.py``'s COPY loader; returns
    (session id, the keyset cursor 10,000 rows deep)."""
    from sqlalchemy import text

    from chalicelib.db.engine import get_engine

    C.progress(f"loading {rows:,} ledger rows (bench/api_latency.load) ...")
    sid, _ = api_latency.load(url, rows)
    C.progress_done()
    with get_engine(url).connect() as conn:
        deep = conn.execute(text("SELECT id FROM account_balances WHERE session_id = :s ORDER BY id DESC "
                                 "OFFSET 10000 LIMIT 1"), {"s": sid}).scalar_one_or_none()
    return sid, int(deep or 1)


def in_process(url: str, iterations: int) -> list[tuple[str, float, float]]:
    """``bench/api_latency.py``'s in-process timings: (endpoint, median ms, p95 ms)."""
    C.progress("in-process timings (bench/api_latency.measure) ...")
    try:
        return api_latency.measure(url, iterations)
    finally:
        C.progress_done()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``chalice local`` in a subprocess, stopped (its process group) on exit."""

    def __init__(self, url: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "DATABASE_URL": url, "ATB_API_TOKENS": TOKENS, "LOG_LEVEL": "WARNING",
               "POWERTOOLS_METRICS_DISABLED": "true"}
        env.pop("ATB_API_TOKENS_SECRET_ARN", None)
        chalice = Path(sys.executable).with_name("chalice")
        self.log = open(os.devnull, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [str(chalice), "local", "--stage", "local", "--no-autoreload", "--host", "127.0.0.1",
             "--port", str(self.port)],
            cwd=C.ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"chalice local exited with {self.proc.returncode}")
            try:
                status, _ = request(self.port, "GET", "/api/health")
                if status < 500:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("chalice local did not answer within a minute")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self.log.close()


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = dict(HEADERS)
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def concurrent(port: int, label: str, make: Callable[[int, int], tuple[str, str, bytes | None, int]], workers: int,
               per_worker: int) -> Result:
    samples: list[float] = []
    errors = 0
    lock = threading.Lock()
    start = threading.Barrier(workers + 1)

    def worker(w: int) -> None:
        nonlocal errors
        start.wait()
        mine: list[float] = []
        bad = 0
        for i in range(per_worker):
            method, path, body, expected = make(w, i)
            t0 = time.perf_counter()
            status, _ = request(port, method, path, body)
            mine.append((time.perf_counter() - t0) * 1000)
            bad += status != expected
        with lock:
            samples.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return Result(label, samples, time.perf_counter() - t0, errors)


def under_concurrency(url: str, sid: int, deep_cursor: int, workers: int, per_worker: int) -> tuple[list[Result],
                                                                                                     str]:
    from sqlalchemy import text

    from chalicelib.db.engine import get_engine

    engine = get_engine(url)

    def total() -> Decimal:
        with engine.connect() as conn:
            return Decimal(conn.execute(text("SELECT total_balance FROM trading_sessions WHERE id = :s"),
                                        {"s": sid}).scalar_one())

    server = LocalServer(url)
    try:
        server.wait()
        for _ in range(20):  # warm the server's imports and pool
            request(server.port, "GET", "/api/balance")
        results = []
        cases: list[tuple[str, Callable[[int, int], tuple[str, str, bytes | None, int]]]] = [
            ("GET /api/balance", lambda w, i: ("GET", "/api/balance", None, 200)),
            ("GET /api/balance/history (first page, 50)", lambda w, i: ("GET", "/api/balance/history", None, 200)),
            ("GET /api/balance/history (10,000 rows deep)",
             lambda w, i: ("GET", f"/api/balance/history?before={deep_cursor}", None, 200)),
            ("POST /api/balance (deposit)",
             lambda w, i: ("POST", "/api/balance",
                           json.dumps({"amount": str(DEPOSIT), "reason": f"concurrent {w}/{i}"}).encode(), 201)),
        ]
        before = Decimal(0)
        for label, make in cases:
            if label.startswith("POST"):
                before = total()
            C.progress(f"chalice local, {workers} workers: {label} ...")
            results.append(concurrent(server.port, label, make, workers, per_worker))
            C.progress_done()
        after = total()
        expected = before + DEPOSIT * workers * per_worker
        check = (f"after {workers * per_worker} concurrent deposits of {DEPOSIT}: balance {after} "
                 f"{'=' if after == expected else '≠'} expected {expected}"
                 f"{'' if after == expected else '  <-- LOST UPDATE'}")
        return results, check
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100, help="requests per worker per endpoint")
    parser.add_argument("--no-concurrency", action="store_true")
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 50 iterations, 8 × 20 requests")
    parser.add_argument("--admin-url", default=C.DEFAULT_ADMIN_URL)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.iterations, args.requests = 20_000, 50, 20
    if args.rows <= 10_000:
        parser.error("--rows must be over 10,000 (the deep history page is 10,000 rows back)")
    C.sigterm_as_interrupt()
    os.environ["ATB_API_TOKENS"] = TOKENS
    os.environ.pop("ATB_API_TOKENS_SECRET_ARN", None)
    C.quiet_logs()
    print(f"machine: {C.machine()}")
    try:
        with C.throwaway_database("postgres", args.admin_url) as url:
            os.environ["DATABASE_URL"] = url
            sid, deep = setup(url, args.rows)
            local = in_process(url, args.iterations)
            print()
            print(C.table(["endpoint", "median ms", "p95 ms", "target"],
                          [[label, med, p95, "ok (< 10 ms)" if med < 10 else "MISSED (< 10 ms)"]
                           for label, med, p95 in local],
                          title=f"in-process (chalice.test.Client), PostgreSQL, {args.rows:,} ledger rows, "
                                f"n={args.iterations}"))
            if not args.no_concurrency:
                results, check = under_concurrency(url, sid, deep, args.workers, args.requests)
                print()
                print(C.table(["endpoint", "requests/s", "median ms", "p95 ms", "errors"],
                              [[r.label, r.rate, C.median(r.samples), C.percentile(r.samples, 95), r.errors]
                               for r in results],
                              title=f"chalice local over HTTP, {args.workers} concurrent workers × {args.requests} "
                                    f"requests per endpoint, {args.rows:,} ledger rows"))
                print(check)
    except KeyboardInterrupt:
        C.progress_done()
        print("interrupted; database dropped, server stopped", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
