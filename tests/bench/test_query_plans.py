"""The ledger queries the API and the engine run stay indexed as the ledger grows (PostgreSQL EXPLAIN).

200,000 ledger rows across four sessions are bulk-loaded (COPY) and ANALYZEd; then the real code paths —
``balances.summarize`` (one statement: latest rows, the account 24 market hours ago and the window's flows) and
``balances.history_page`` (first page and a keyset page 10,000 rows back) — run with a ``before_cursor_execute``
hook that captures every statement they send. Each captured statement that reads ``account_balances`` is EXPLAINed
with its own parameters: no plan may scan the ledger sequentially, and each must reach it through one of its indexes.
If the code's queries change into something unindexed, this fails.

(At this distribution the planner reads the keyset page through the primary key backwards, filtering on
``session_id``, rather than through ``(session_id, id)``: both are index scans; the first walks past other
sessions' rows, so its cost grows with how interleaved the sessions are.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))  # after the project: bench/lab.py never hides lab/

import _common

from chalicelib import balances
from chalicelib.bot.sessions import open_session
from chalicelib.bots import BotSpec
from chalicelib.db.uow import read_transaction

SESSIONS = 4
ROWS_PER_SESSION = 50_000
SPACING = timedelta(seconds=5)  # 50,000 rows × 5 s ≈ 69 h: the 24h-ago row sits inside the history


@pytest.fixture
def loaded(pg_engine: Engine) -> list[int]:
    ids = []
    for i in range(SESSIONS):
        # four distinct bots (a bot is its symbol, timeframe, exchange and mode)
        spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe=("1h", "4h", "1d", "15m")[i],
                       exchange="replay")
        sid = open_session(pg_engine, spec, initial_balance=Decimal(10_000), resume=False).session_id
        # sessions' rows interleave in time like real bots; each session's rows are one id range
        _common.load_ledger(pg_engine, sid, ROWS_PER_SESSION, spacing=SPACING)
        ids.append(sid)
    with pg_engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return ids


def _capture(engine: Engine) -> Any:
    captured: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "account_balances" in statement:
            captured.append((statement, parameters))

    class Hook:
        def __enter__(self) -> list[tuple[str, Any]]:
            event.listen(engine, "before_cursor_execute", before)
            return captured

        def __exit__(self, *exc: object) -> None:
            event.remove(engine, "before_cursor_execute", before)

    return Hook()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _ledger_indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'account_balances'")).all()
    return {name for (name,) in rows}


def _explain(engine: Engine, statement: str, parameters: Any) -> dict[str, Any]:
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
    doc = json.loads(raw) if isinstance(raw, str) else raw
    return doc[0]["Plan"]


def _assert_indexed(engine: Engine, what: str, statement: str, parameters: Any, good: set[str]) -> None:
    plan = _explain(engine, statement, parameters)
    nodes = list(_nodes(plan))
    seq = [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "account_balances"]
    assert not seq, f"{what}: sequential scan of the ledger\n{statement}\n{json.dumps(plan, indent=1)}"
    used = {n["Index Name"] for n in nodes if "Index Name" in n}
    assert used & good, (f"{what}: the ledger is not read through one of its indexes; indexes used: "
                         f"{sorted(used)}\n{statement}\n{json.dumps(plan, indent=1)}")


def test_balance_24h_change_and_history_queries_use_ledger_indexes(pg_engine: Engine, loaded: list[int]) -> None:
    good = _ledger_indexes(pg_engine)
    assert "ix_account_balances_session_id_id" in good and "ix_account_balances_session_id_market_time" in good
    sid = loaded[1]  # a session in the middle of the id range
    with read_transaction(pg_engine) as db:
        session = balances.select_session(db, sid)
        with _capture(pg_engine) as summary_sql:
            summary = balances.summarize(db, session)
        assert summary.latest is not None and summary.start.market_time < summary.now.market_time
        with _capture(pg_engine) as first_sql:
            page, cursor = balances.history_page(db, sid, limit=50)
        deep_before = page[0].id - 10_000
        with _capture(pg_engine) as deep_sql:
            deep, _ = balances.history_page(db, sid, limit=50, before=deep_before)
    assert len(page) == 50 and cursor is not None and len(deep) == 50 and deep[0].id == deep_before - 1

    # summarize: one statement — the recent rows (latest first), the account 24 market hours ago (ledger and tick
    # log), the first row and the window's flows; EXPLAIN covers every part of it
    assert len(summary_sql) == 1, summary_sql
    assert "market_time <=" in summary_sql[0][0], "the 24 h point was not in the captured statement"
    for statement, parameters in summary_sql:
        _assert_indexed(pg_engine, "summarize", statement, parameters, good)
    for what, captured in (("history first page", first_sql), ("history keyset page", deep_sql)):
        assert len(captured) == 1, captured
        statement, parameters = captured[0]
        _assert_indexed(pg_engine, what, statement, parameters, good)

    # An account younger than 24 h compares with its first row (ordered by id): also through an index.
    spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="30m", exchange="replay")
    young = open_session(pg_engine, spec, initial_balance=Decimal(10_000), resume=False).session_id
    with pg_engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    with read_transaction(pg_engine) as db:
        session = balances.select_session(db, young)
        with _capture(pg_engine) as sql:
            balances.summarize(db, session)
    assert len(sql) == 1, sql
    for statement, parameters in sql:
        _assert_indexed(pg_engine, "summarize (young account)", statement, parameters, good)
