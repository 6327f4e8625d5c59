"""A strategy file shipped in chalicelib/user_strategies trades in the Lambda's scheduled tick like a built-in one,
and a broken one fails its own bot only."""

from __future__ import annotations

import importlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

from chalice.test import Client
from engine_testing import HOUR, ReplayExchange

from chalicelib.bot import scheduled
from chalicelib.db.models import TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.trading import strategies
from chalicelib.verify import verify

ROOT = Path(__file__).resolve().parents[2]
FIRST = datetime(2023, 1, 1, tzinfo=UTC)


def _event(client: Client, when: datetime) -> dict:
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                            resources=["arn:aws:events:us-east-1:123456789012:rule/atb-tick"])
    event["time"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def test_a_bundled_user_strategy_trades_in_the_scheduled_tick(pg_engine, monkeypatch, tmp_path):
    bundled = tmp_path / "user_strategies"
    bundled.mkdir()
    shutil.copy(ROOT / "docs" / "examples" / "strategies" / "donchian_breakout.py", bundled)
    (bundled / "broken.py").write_text("STRATEGY = None\n")
    monkeypatch.setattr(strategies, "BUNDLED_DIR", bundled)
    monkeypatch.setattr(strategies, "_USER", {})
    monkeypatch.setattr(strategies, "_discovered", False)
    monkeypatch.setattr(scheduled, "make_feed", lambda exchange_id: ReplayExchange())
    monkeypatch.setenv("ATB_BOTS", "donchian_breakout:BTCUSDT:1h:binance, ma_crossover:BTCUSDT:1h:kraken")
    import app as app_module

    client = Client(importlib.reload(app_module).app, project_dir=str(tmp_path))
    start = FIRST + HOUR * 100 + HOUR / 60
    client.lambda_.invoke("tick", _event(client, start))
    payload = client.lambda_.invoke("tick", _event(client, start + HOUR * 400)).payload
    statuses = {b["bot"]: b["status"] for b in payload["bots"]}
    # the broken file stops the user strategies (it is named in the error), never the built-in bot
    assert statuses["ma_crossover:BTCUSDT:1h:kraken"] == "applied"
    assert statuses["donchian_breakout:BTCUSDT:1h:binance"] == "error"

    (bundled / "broken.py").unlink()
    payload = client.lambda_.invoke("tick", _event(client, start + HOUR * 400)).payload
    [mine] = [b for b in payload["bots"] if b["bot"].startswith("donchian")]
    assert mine["status"] == "applied" and mine["candles_applied"] == 1
    later = client.lambda_.invoke("tick", _event(client, start + HOUR * 800)).payload
    [mine] = [b for b in later["bots"] if b["bot"].startswith("donchian")]
    assert mine["status"] == "applied" and mine["candles_applied"] == 400 and mine["trades_opened"] >= 1
    with read_transaction(pg_engine) as db:
        assert db.get(TradingSession, mine["session_id"]).strategy == "donchian_breakout"
    assert verify(pg_engine).ok
