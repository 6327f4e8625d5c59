"""One wallet, two pairs, on an exchange-style feed: a pair whose newest candle is published late is waited for
within ``TickSettings.symbol_wait_s`` (through ``TickSettings.sleep``: a fake here, so nothing really waits), then
left out (``skipped``) while the other pair trades, and caught up by the next tick; a pair whose feed fails or
whose data has a gap never stalls the other. Each runs on SQLite and PostgreSQL, and the ledger verifies."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal

import pytest
from engine_testing import HOUR, T0, PairsExchange, ScriptedStrategy, candle, snapshot

from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import TickSettings, fixed_clock, tick_session
from chalicelib.bots import BotSpec
from chalicelib.trading.feeds import FeedError
from chalicelib.trading.strategies import EnterLong
from chalicelib.verify import verify

PAIRS = "BTCUSDT,ETHUSDT"


def _session(engine) -> int:  # type: ignore[no-untyped-def]
    spec = BotSpec(strategy="scripted", symbol=PAIRS, timeframe="1h", exchange="binance")
    return open_session(engine, spec, initial_balance=Decimal(1000), start_cursor=T0).session_id


def _series(first: int, last: int, base: int) -> list:  # type: ignore[type-arg]
    return [candle(i, str(base + i)) for i in range(first, last + 1)]


class FakeSleep:
    """Records the pauses the tick asks for; returns at once."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


def _settings(wait: float, sleep: FakeSleep) -> TickSettings:
    return replace(TickSettings(), symbol_wait_s=wait, sleep=sleep)


def _ticks(engine) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    return [(t[10], t[1]) for t in snapshot(engine)["ticks"]]


def test_a_pair_published_a_moment_late_is_waited_for_and_both_apply_in_one_tick(engine):
    sid = _session(engine)
    # ETH's 03:00 candle appears on the exchange's third answer (two asks after the first)
    feed = PairsExchange({"BTCUSDT": _series(1, 3, 100), "ETHUSDT": _series(1, 3, 2000)},
                         late={"ETHUSDT": (T0 + HOUR * 3, 2)})
    sleep = FakeSleep()
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=ScriptedStrategy(),
                          settings=_settings(10, sleep))
    assert result.status == "applied" and result.skipped == ()
    assert [(o.symbol, o.candle_time) for o in result.outcomes] == [
        (s, T0 + HOUR * i) for i in (1, 2, 3) for s in ("BTCUSDT", "ETHUSDT")]
    assert sleep.pauses == [0.5, 1.0]  # asked twice more, backing off
    assert feed.calls == {"BTCUSDT": 1, "ETHUSDT": 3}


def test_a_pair_later_than_the_wait_is_skipped_the_other_applies_and_the_next_tick_catches_it_up(engine):
    sid = _session(engine)
    entry = EnterLong(stop_loss=Decimal(1), take_profit=Decimal(10_000))
    strategy = ScriptedStrategy(script={T0 + HOUR * 3: entry})
    feed = PairsExchange({"BTCUSDT": _series(1, 3, 100), "ETHUSDT": _series(1, 3, 2000)},
                         late={"ETHUSDT": (T0 + HOUR * 3, 1_000)})
    sleep = FakeSleep()
    started = time.monotonic()
    first = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy,
                         settings=_settings(3, sleep))
    assert time.monotonic() - started < 2, "a fake sleep must not turn the wait into real time"
    # the pauses add up to the wait and no more: 0.5 + 1 + 1.5 (the rest of the 3 s), then it gives up
    assert sleep.pauses == [0.5, 1.0, 1.5] and sum(sleep.pauses) == 3
    assert first.status == "applied"
    assert first.skipped == ("ETHUSDT: no candle at 2024-01-01T03:00:00Z yet",)
    assert [(o.symbol, o.candle_time) for o in first.outcomes] == [
        ("BTCUSDT", T0 + HOUR), ("ETHUSDT", T0 + HOUR), ("BTCUSDT", T0 + HOUR * 2), ("ETHUSDT", T0 + HOUR * 2),
        ("BTCUSDT", T0 + HOUR * 3)]
    assert [f.side for f in first.outcomes[-1].fills] == ["buy"]  # BTC traded meanwhile
    marks = snapshot(engine)["sessions"][0][11]
    assert (marks["BTCUSDT"].cursor, marks["ETHUSDT"].cursor) == (T0 + HOUR * 3, T0 + HOUR * 2)

    # The exchange publishes ETH's candle: the next tick (same hour) applies just that one, and ETH enters too.
    feed.late.clear()
    again = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy,
                         settings=_settings(3, sleep))
    assert again.status == "applied" and again.skipped == ()
    assert [(o.symbol, o.candle_time) for o in again.outcomes] == [("ETHUSDT", T0 + HOUR * 3)]
    assert [f.side for f in again.outcomes[0].fills] == ["buy"]
    assert _ticks(engine) == [(s, T0 + HOUR * i) for i in (1, 2, 3) for s in ("BTCUSDT", "ETHUSDT")]
    snap = snapshot(engine)
    assert sorted(p[0] for p in snap["positions"]) == ["BTCUSDT", "ETHUSDT"]
    marks = snap["sessions"][0][11]
    assert marks["ETHUSDT"].cursor == T0 + HOUR * 3 and marks["ETHUSDT"].close == Decimal(2003)
    # and nothing is applied twice
    assert tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy).status == "up_to_date"
    assert verify(engine).ok


def test_a_pair_whose_feed_fails_is_skipped_and_the_other_keeps_trading(engine):
    sid = _session(engine)
    feed = PairsExchange({"BTCUSDT": _series(1, 4, 100), "ETHUSDT": _series(1, 4, 2000)})
    sleep = FakeSleep()
    assert tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 2), strategy=ScriptedStrategy(),
                        settings=_settings(10, sleep)).candles_applied == 2
    feed.fail["ETHUSDT"] = FeedError("cannot reach binance: ETH/USDT timed out")
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=ScriptedStrategy(),
                          settings=_settings(10, sleep))
    assert result.status == "applied"
    assert result.skipped == ("ETHUSDT: cannot reach binance: ETH/USDT timed out",)
    assert [(o.symbol, o.candle_time) for o in result.outcomes] == [("BTCUSDT", T0 + HOUR * i) for i in (2, 3)]
    assert sleep.pauses == []  # a failed pair is not waited for

    feed.fail.clear()  # the exchange answers again: ETH catches up from its own cursor, in order
    later = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 5), strategy=ScriptedStrategy(),
                         settings=_settings(10, sleep))
    assert [(o.symbol, o.candle_time) for o in later.outcomes] == [
        ("ETHUSDT", T0 + HOUR * 2), ("ETHUSDT", T0 + HOUR * 3), ("BTCUSDT", T0 + HOUR * 4), ("ETHUSDT", T0 + HOUR * 4)]
    assert _ticks(engine) == [(s, T0 + HOUR * i) for i in (1, 2, 3, 4) for s in ("BTCUSDT", "ETHUSDT")]
    assert verify(engine).ok


def test_when_every_pair_fails_nothing_is_written(engine):
    sid = _session(engine)
    before = snapshot(engine, with_times=True)
    boom = FeedError("exchange down")
    feed = PairsExchange({"BTCUSDT": _series(1, 3, 100), "ETHUSDT": _series(1, 3, 2000)},
                         fail={"BTCUSDT": boom, "ETHUSDT": boom})
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=ScriptedStrategy())
    assert result.status == "feed_error" and len(result.skipped) == 2
    assert snapshot(engine, with_times=True) == before


def test_a_gap_in_one_pair_does_not_stall_the_other(engine):
    sid = _session(engine)
    eth = [c for c in _series(1, 5, 2000) if c.open_time != T0 + HOUR * 3]  # the exchange never had ETH 03:00
    feed = PairsExchange({"BTCUSDT": _series(1, 5, 100), "ETHUSDT": eth})
    sleep = FakeSleep()
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 6), strategy=ScriptedStrategy(),
                          settings=_settings(10, sleep))
    assert result.status == "applied" and result.skipped == () and sleep.pauses == []
    assert [(o.symbol, o.candle_time.hour) for o in result.outcomes] == [
        ("BTCUSDT", 1), ("ETHUSDT", 1), ("BTCUSDT", 2), ("ETHUSDT", 2), ("BTCUSDT", 3), ("BTCUSDT", 4),
        ("ETHUSDT", 4), ("BTCUSDT", 5), ("ETHUSDT", 5)]
    assert result.gaps == ("ETHUSDT: 1 candle(s) missing between 2024-01-01T02:00:00Z and 2024-01-01T04:00:00Z",)
    assert "after a gap in market data" in next(o.detail for o in result.outcomes
                                                  if (o.symbol, o.candle_time.hour) == ("ETHUSDT", 4))
    assert verify(engine).ok


def test_a_gap_at_the_end_of_one_pair_is_waited_for_then_skipped_and_passed_over_once_the_next_candle_comes(engine):
    sid = _session(engine)
    eth = [c for c in _series(1, 5, 2000) if c.open_time != T0 + HOUR * 3]
    feed = PairsExchange({"BTCUSDT": _series(1, 5, 100), "ETHUSDT": eth})
    sleep = FakeSleep()
    first = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=ScriptedStrategy(),
                         settings=_settings(1, sleep))
    assert first.skipped == ("ETHUSDT: no candle at 2024-01-01T03:00:00Z yet",) and sum(sleep.pauses) == 1
    assert [o.symbol for o in first.outcomes].count("BTCUSDT") == 3
    # an hour later ETH has 04:00 (03:00 never comes): both apply 04:00, ETH over the gap
    second = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 5), strategy=ScriptedStrategy(),
                          settings=_settings(1, sleep))
    assert second.skipped == ()
    assert [(o.symbol, o.candle_time.hour) for o in second.outcomes] == [("BTCUSDT", 4), ("ETHUSDT", 4)]
    assert verify(engine).ok


class _Pyramiding(ScriptedStrategy):
    """Enters on every scripted candle, position open or not (a strategy that adds to a pair)."""

    def decide(self, candles, position):
        return self.script.get(candles[-1].open_time, super().decide(candles, position))


def test_a_pair_holds_as_many_positions_as_configured_and_no_more(engine):
    from chalicelib.db.models import Position
    from chalicelib.db.uow import read_transaction
    from chalicelib.trading.risk import RiskConfig

    feed = PairsExchange({"BTCUSDT": [candle(i, "100") for i in range(5)]})
    enter = EnterLong(stop_loss=Decimal(90), take_profit=Decimal(200))
    strategy = _Pyramiding(script={T0 + HOUR * i: enter for i in (1, 2, 3)})
    for allowed, opened, exchange in ((1, 1, "binance"), (2, 2, "kraken")):  # two bots, two accounts
        spec = BotSpec(strategy="scripted", symbol="BTCUSDT", timeframe="1h", exchange=exchange)
        sid = open_session(engine, spec, initial_balance=Decimal(1000), start_cursor=T0).session_id
        settings = TickSettings(risk=RiskConfig(max_positions_per_symbol=allowed))
        result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy,
                              settings=settings)
        with read_transaction(engine) as db:
            held = db.query(Position).filter_by(session_id=sid, status="open").count()
        assert held == opened == result.trades_opened
        # past the limit the entry is the strategy's error, held for that candle (decide_safely's may_add)
        refused = [o for o in result.outcomes if o.decision != "enter_long" and o.candle_time > T0 + HOUR]
        assert len(refused) == 3 - opened and all(
            o.decision == "error" and "asked to enter while a position is already open" in o.detail
            for o in refused), [o.detail for o in refused]
    assert verify(engine).ok


@pytest.mark.parametrize("start_cursor", [T0, None], ids=["from-a-start-cursor", "new-account"])
def test_a_pair_failing_before_its_first_candle_catches_up_from_where_the_account_began(engine, start_cursor):
    """A pair with no candle applied yet starts where the account began (pairs_from), not at the account's moving
    cursor: its first candles are caught up later, none is lost (before, a pair failing at the start lost every
    candle the other pair applied meanwhile)."""
    spec = BotSpec(strategy="scripted", symbol=PAIRS, timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=Decimal(1000), start_cursor=start_cursor).session_id
    feed = PairsExchange({"BTCUSDT": _series(0, 4, 100), "ETHUSDT": _series(0, 4, 2000)})
    feed.fail["ETHUSDT"] = FeedError("cannot reach binance")
    sleep = FakeSleep()
    first = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 2), strategy=ScriptedStrategy(),
                         settings=_settings(10, sleep))
    btc_first = [T0 + HOUR]  # after T0, or (a new account) the newest candle closed at 2:00
    assert [(o.symbol, o.candle_time) for o in first.outcomes] == [("BTCUSDT", t) for t in btc_first]
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=ScriptedStrategy(),
                 settings=_settings(10, sleep))  # BTC moves on to 3:00 while ETH still fails
    feed.fail.clear()
    later = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 5), strategy=ScriptedStrategy(),
                         settings=_settings(10, sleep))
    assert [(o.symbol, o.candle_time) for o in later.outcomes] == [
        ("ETHUSDT", T0 + HOUR), ("ETHUSDT", T0 + HOUR * 2), ("ETHUSDT", T0 + HOUR * 3),
        ("BTCUSDT", T0 + HOUR * 4), ("ETHUSDT", T0 + HOUR * 4)]
    assert verify(engine).ok
