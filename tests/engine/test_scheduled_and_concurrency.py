"""The scheduled Lambda driven through chalice.test.Client against real PostgreSQL with a fake exchange;
overlapping ticks; sessions that resume, switch strategy or start fresh."""

from __future__ import annotations

import importlib
import logging
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from chalice.test import Client
from engine_testing import HOUR, T0, FakeExchange, ReplayExchange, ScriptedStrategy, candle, snapshot

from chalicelib.bot import scheduled
from chalicelib.bot.sessions import open_session, switch_strategy
from chalicelib.bot.tick import fixed_clock, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db import engine as engine_module
from chalicelib.db.models import Position, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.trading.strategies import EnterLong
from chalicelib.verify import verify

FIRST = datetime(2023, 1, 1, tzinfo=UTC)  # first bundled candle


def _event(client: Client, when: datetime) -> dict:
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                            resources=["arn:aws:events:us-east-1:123456789012:rule/atb-tick"])
    event["time"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def _fresh_app():
    import app as app_module

    return importlib.reload(app_module).app


def test_the_scheduled_tick_creates_trades_recovers_after_a_restart_and_ignores_duplicates(
    pg_engine, monkeypatch, tmp_path, caplog
):
    exchange = ReplayExchange()
    monkeypatch.setattr(scheduled, "make_feed", lambda exchange_id: exchange)
    monkeypatch.setenv("ATB_BOTS", "ml_basic:BTCUSDT:1h:binance")
    client = Client(_fresh_app(), project_dir=str(tmp_path))

    start = FIRST + HOUR * 100 + HOUR / 60  # one minute past the hour, as the cron fires
    first = client.lambda_.invoke("tick", _event(client, start)).payload
    [bot] = first["bots"]
    assert bot["status"] == "applied" and bot["candles_applied"] == 1  # a new session starts at the newest candle
    session_id = bot["session_id"]

    # Ten days later (missed ticks are caught up in order), the bot has traded.
    later = client.lambda_.invoke("tick", _event(client, start + HOUR * 240)).payload["bots"][0]
    assert later["candles_applied"] == 240 and later["trades_opened"] >= 1
    # Find a moment with a position open, so the restart has something to recover.
    when = start + HOUR * 240
    for _ in range(200):
        with read_transaction(pg_engine) as db:
            if db.query(Position).filter_by(status="open").count():
                break
        when += HOUR
        client.lambda_.invoke("tick", _event(client, when))
    else:
        pytest.fail("no position opened in 200 more hours")

    before = snapshot(pg_engine, with_times=True)
    # A cold start: new app object, new engine, new client; then the same event delivered again.
    engine_module.dispose_engines()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="atb")
    client = Client(_fresh_app(), project_dir=str(tmp_path))
    duplicate = client.lambda_.invoke("tick", _event(client, when)).payload["bots"][0]
    assert duplicate["status"] == "up_to_date" and duplicate["session_id"] == session_id
    assert snapshot(pg_engine, with_times=True) == before
    logs = caplog.text
    assert f"Found active session #{session_id}" in logs
    assert f"Recovered balance for session #{session_id}: $" in logs
    assert "Recovered position: BTCUSDT long @ $" in logs

    after = client.lambda_.invoke("tick", _event(client, when + HOUR)).payload["bots"][0]
    assert after["status"] == "applied" and after["candles_applied"] == 1
    assert verify(pg_engine).ok


def test_one_failing_bot_is_reported_and_does_not_stop_the_others(pg_engine, monkeypatch, tmp_path):
    good = ReplayExchange()
    broken = FakeExchange([], fail_with=RuntimeError("exchange on fire"))
    monkeypatch.setattr(scheduled, "make_feed", lambda exchange_id: broken if exchange_id == "kraken" else good)
    monkeypatch.setenv("ATB_BOTS", "ma_crossover:BTCUSDT:1h:kraken, ml_basic:BTCUSDT:1h:binance")
    client = Client(_fresh_app(), project_dir=str(tmp_path))
    payload = client.lambda_.invoke("tick", _event(client, FIRST + HOUR * 80)).payload
    statuses = {b["bot"]: b["status"] for b in payload["bots"]}
    assert statuses == {"ma_crossover:BTCUSDT:1h:kraken": "error", "ml_basic:BTCUSDT:1h:binance": "applied"}
    assert payload["ok"] is False


def test_an_unreadable_bot_entry_is_a_clear_error_not_a_crash(pg_engine, monkeypatch, tmp_path):
    monkeypatch.setenv("ATB_BOTS", "ml_basic")
    client = Client(_fresh_app(), project_dir=str(tmp_path))
    payload = client.lambda_.invoke("tick", _event(client, FIRST + HOUR * 80)).payload
    [bot] = payload["bots"]
    assert payload["ok"] is False and bot["status"] == "error" and "STRATEGY:SYMBOL" in bot["error"]


BAD_BOTS = {
    "nosuch:BTCUSDT:1h:binance": "unknown strategy 'nosuch' (available: ma_crossover, ml_basic",
    "ml_basic:BTCUSDT:7x:binance": "unsupported timeframe '7x'",
    "ml_basic:ETHBTC:1h:binance": "ETHBTC is quoted in BTC, which is not USD",
    "ml_basic:???:1h:binance": "cannot read symbol '???'",
    "ml_basic:BTCUSDT:1h:nosuchexchange": "unknown exchange 'nosuchexchange'",
    "ml_basic:btc/usdt:1h:BINANCE": "the same bot as 'ma_crossover:BTCUSDT:1h:binance'",
}


def test_each_bad_bot_in_atb_bots_fails_alone_with_a_logged_reason_and_writes_nothing(
    pg_engine, monkeypatch, tmp_path, caplog
):
    exchange = ReplayExchange()
    monkeypatch.setattr(scheduled, "make_feed", lambda exchange_id: exchange)
    monkeypatch.setenv("ATB_BOTS", ",".join(["ma_crossover:BTCUSDT:1h:binance", *BAD_BOTS]))
    caplog.set_level(logging.INFO, logger="atb")
    client = Client(_fresh_app(), project_dir=str(tmp_path))
    payload = client.lambda_.invoke("tick", _event(client, FIRST + HOUR * 80)).payload

    by_entry = {b["bot"]: b for b in payload["bots"]}
    assert by_entry["ma_crossover:BTCUSDT:1h:binance"]["status"] == "applied"
    for entry, reason in BAD_BOTS.items():
        assert by_entry[entry]["status"] == "error" and reason in by_entry[entry]["error"], entry
        assert f"Bot definition refused in ATB_BOTS: bot {entry!r}: {reason}" in caplog.text
    assert payload["ok"] is False
    # Only the good bot has a session and ledger rows.
    snap = snapshot(pg_engine)
    assert [(s[0], s[1]) for s in snap["sessions"]] == [("ma_crossover", "BTCUSDT")]
    assert snap["ledger"][0][0] == "initial" and len(snap["ledger"]) == 1


@pytest.mark.parametrize("rounds", [3])
def test_overlapping_ticks_apply_each_candle_once(database_url, rounds):
    """Tick A holds the session lock while it decides; tick B, started meanwhile, skips (Postgres SKIP LOCKED)
    or waits and finds nothing new (SQLite serialises writers). Each candle is applied once."""
    engine = engine_module.get_engine(database_url)
    spec = BotSpec(strategy="scripted", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, start_cursor=T0).session_id
    feed = FakeExchange([candle(i, str(100 + i)) for i in range(2 + rounds * 2)])
    entry = {T0 + HOUR: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(200))}
    for r in range(rounds):
        now = T0 + HOUR * (3 + r * 2)
        gate = threading.Event()
        slow = ScriptedStrategy(script=entry, gate=gate)
        results: dict[str, object] = {}

        def run_a(now=now, slow=slow, results=results) -> None:
            results["a"] = tick_session(engine, sid, feed, clock=fixed_clock(now), strategy=slow)

        a = threading.Thread(target=run_a)
        a.start()
        while not slow.seen:  # A is inside its transaction, holding the lock
            threading.Event().wait(0.01)
        if engine.dialect.name == "postgresql":
            b = tick_session(engine, sid, feed, clock=fixed_clock(now), strategy=ScriptedStrategy(script=entry))
            assert b.status == "locked"
            gate.set()
            a.join()
        else:
            def run_b(now=now, results=results) -> None:
                results["b"] = tick_session(engine, sid, feed, clock=fixed_clock(now),
                                            strategy=ScriptedStrategy(script=entry))

            bt = threading.Thread(target=run_b)
            bt.start()
            gate.set()
            a.join()
            bt.join()
            assert results["b"].status == "up_to_date"  # type: ignore[attr-defined]
        assert results["a"].status == "applied"  # type: ignore[attr-defined]
    snap = snapshot(engine)
    assert [t[1] for t in snap["ticks"]] == [T0 + HOUR * i for i in range(1, 1 + rounds * 2)]
    assert len(snap["positions"]) == 1
    assert verify(engine).ok


def test_a_stopped_account_is_reopened_as_the_same_account_with_its_balance_positions_and_cursor(engine):
    spec = BotSpec(strategy="scripted", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, start_cursor=T0).session_id
    feed = FakeExchange([candle(i, "100") for i in range(6)])
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(200))})
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 3), strategy=strategy)
    with write_transaction(engine) as db:
        s = db.get(TradingSession, sid)
        assert s is not None
        s.status = "ended"
        balance_before = s.total_balance

    opening = open_session(engine, spec)
    assert opening.how == "resumed" and opening.session_id == sid  # the same account, never a copy
    assert opening.total_balance == balance_before and len(opening.positions) == 1
    assert opening.candle_cursor == T0 + HOUR * 2
    lines = opening.lines()
    assert lines[0].startswith(f"Reopened session #{sid}")
    assert "Recovering 1 active position…" in lines and "Successfully recovered 1 position" in lines
    assert any(line.startswith("Recovered position:") for line in lines)
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 6), strategy=strategy)
    assert [o.candle_time for o in result.outcomes] == [T0 + HOUR * 3, T0 + HOUR * 4, T0 + HOUR * 5]
    report = verify(engine)
    assert report.ok, [s.problems for s in report.sessions]
    snap = snapshot(engine)
    assert len(snap["sessions"]) == 1 and ("reopened", None) in [(row[0], row[5]) for row in snap["ledger"]]


def test_switching_strategy_keeps_the_account_its_positions_peak_and_units_and_is_recorded(engine):
    spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, start_cursor=T0).session_id
    feed = FakeExchange([candle(i, "100") for i in range(4)])
    scripted = ScriptedStrategy(name="ma_crossover",
                                script={T0 + HOUR: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(200))})
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 3), strategy=scripted)
    with read_transaction(engine) as db:
        before = db.get(TradingSession, sid)
        assert before is not None
    opening = switch_strategy(engine, sid, "ml_basic")
    assert opening.session_id == sid and opening.spec.strategy == "ml_basic" and len(opening.positions) == 1
    with read_transaction(engine) as db:
        after = db.get(TradingSession, sid)
        assert after is not None and after.strategy == "ml_basic" and after.status == "active"
        from chalicelib.db.models import AccountBalance

        last = db.query(AccountBalance).filter_by(session_id=sid).order_by(AccountBalance.id.desc()).first()
        assert last is not None and last.kind == "strategy_switch" and last.delta == 0
        assert "Strategy changed from ma_crossover to ml_basic" in last.update_reason
        # nothing about the money moved: balance, reservation, units, value per unit, peak, cursor
        keys = ("total_balance", "reserved_balance", "units", "unit_value", "peak_unit_value", "candle_cursor")
        assert [getattr(after, k) for k in keys] == [getattr(before, k) for k in keys]
        assert db.query(TradingSession).count() == 1
    assert verify(engine).ok


def test_fresh_resets_the_same_account_and_keeps_its_history(engine):
    spec = BotSpec(strategy="scripted", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=Decimal(500)).session_id
    opening = open_session(engine, spec, initial_balance=Decimal(2000), fresh=True)
    assert opening.how == "fresh" and opening.session_id == sid and opening.total_balance == 2000
    with read_transaction(engine) as db:
        from chalicelib.db.models import AccountBalance

        rows = db.query(AccountBalance).filter_by(session_id=sid).order_by(AccountBalance.id).all()
        assert [r.kind for r in rows] == ["initial", "reset"]  # the old history stays, the reset is in it
        assert "Fresh start" in rows[1].update_reason and rows[1].delta == 1500
        assert (rows[1].units, rows[1].unit_value) == (Decimal(2000), Decimal(1))  # a new unit series
    assert verify(engine).ok
