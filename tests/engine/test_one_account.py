"""One account per bot for life: the README's command, a strategy switch, and either strategy's command again all
continue the same account, with its balance and open positions — on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from chalice.test import Client
from sqlalchemy import select
from test_cli_live import ATB, LIVE, _run

from chalicelib.db.engine import get_engine
from chalicelib.db.models import AccountBalance, Position, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.verify import verify

#: After 289 bundled candles ml_basic holds one position (entered on the 289th, 2023-01-13 00:00).
TICKS_TO_AN_OPEN_POSITION = "289"
READ_TOKEN = "a-read-token-for-the-one-account-test-0123456789"


def _account(url: str) -> tuple[list[TradingSession], list[Position], list[str]]:
    with read_transaction(get_engine(url)) as db:
        sessions = list(db.execute(select(TradingSession)).scalars())
        positions = list(db.execute(select(Position).where(Position.status == "open")).scalars())
        kinds = list(db.execute(select(AccountBalance.kind).order_by(AccountBalance.id)).scalars())
    return sessions, positions, kinds


def _recovered_balance(stdout: str) -> str:
    match = re.search(r"^Recovered balance for session #1: (\$[\d,.]+)", stdout, re.M)
    assert match, stdout
    return match.group(1)


def test_the_readme_command_a_switch_and_either_command_again_keep_one_account(database_url, tmp_path, monkeypatch):
    env = {"DATABASE_URL": database_url}
    first = _run([*LIVE, "--ticks", TICKS_TO_AN_OPEN_POSITION], tmp_path, **env)
    assert first.returncode == 0, first.stderr
    [session], positions, _ = _account(database_url)
    assert len(positions) == 1
    balance, units, cursor = session.total_balance, session.units, session.candle_cursor

    switched = _run([*ATB, "switch-strategy", "ma_crossover"], tmp_path, **env)
    assert switched.returncode == 0, switched.stderr
    assert not any(line.lstrip().startswith("{") for line in switched.stdout.splitlines())  # no JSON logs

    for strategy, was in (("ml_basic", "ma_crossover"), ("ma_crossover", "ml_basic")):
        again = _run([*ATB, "live", strategy, *LIVE[len(ATB) + 2:], "--ticks", "1"], tmp_path, **env)
        assert again.returncode == 0, again.stderr
        assert "Found active session #1" in again.stdout
        assert f"Switched strategy {was} → {strategy} (recorded in the ledger)" in again.stdout
        assert "Recovering 1 active position…" in again.stdout or "Recovering 0 active positions…" in again.stdout
        if strategy == "ml_basic":  # the first run back finds exactly what the switch left
            assert _recovered_balance(again.stdout) == f"${balance:,.2f}"
            assert "Recovering 1 active position…" in again.stdout and "Successfully recovered 1 position" in (
                again.stdout)

    sessions, _, kinds = _account(database_url)
    assert len(sessions) == 1 and sessions[0].status == "active" and sessions[0].strategy == "ma_crossover"
    assert kinds.count("strategy_switch") == 3 and kinds[0] == "initial"
    assert sessions[0].units == units and sessions[0].candle_cursor > cursor  # same units: no capital moved
    assert verify(get_engine(database_url)).ok

    shown = _run([*ATB, "balance", "show", "--json"], tmp_path, **env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["session_id"] == 1

    monkeypatch.setenv("ATB_API_TOKENS", f"viewer:read:{READ_TOKEN}")
    monkeypatch.delenv("ATB_API_TOKENS_SECRET_ARN", raising=False)
    from app import app

    with Client(app) as client:
        response = client.http.get("/api/balance", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert response.status_code == 200, response.body
    body = json.loads(response.body, parse_float=Decimal)
    assert body["session_id"] == 1 and body["strategy"] == "ma_crossover"
    assert body["current_balance"] == sessions[0].total_balance


def test_after_the_readme_quick_start_the_history_spans_the_300_market_hours_it_replayed(tmp_path, monkeypatch):
    """The quick start replays 300 hourly candles (2023-01-01 00:00 → 2023-01-13 12:00): the account's history and
    its figures are in market time, so the chart draws 300 hours of balance, not a spike at today's wall clock."""
    run = _run([*LIVE, "--ticks", "300"], tmp_path)
    assert run.returncode == 0, run.stderr
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'atb.sqlite3'}")
    monkeypatch.setenv("ATB_API_TOKENS", f"viewer:read:{READ_TOKEN}")
    monkeypatch.delenv("ATB_API_TOKENS_SECRET_ARN", raising=False)
    from app import app

    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    entries, cursor = [], None
    with Client(app) as client:
        while True:
            page = json.loads(client.http.get("/api/balance/history?limit=500" + (f"&before={cursor}" if cursor
                                                                                   else ""), headers=headers).body)
            entries += page["entries"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        balance = json.loads(client.http.get("/api/balance", headers=headers).body)
    times = sorted(datetime.fromisoformat(e["market_time"].replace("Z", "+00:00")) for e in entries)
    now = datetime.fromisoformat(balance["market_time"].replace("Z", "+00:00"))
    assert times[0] == datetime(2023, 1, 1, tzinfo=UTC)  # the first candle's open: where the account began
    assert now == datetime(2023, 1, 13, 12, tzinfo=UTC)  # the 300th candle's close
    assert now - times[0] == timedelta(hours=300)
    assert times[-1] > times[0] + timedelta(hours=250)  # trades all along the replay, not one instant
    assert len({t.date() for t in times}) >= 6  # rows on many market days
