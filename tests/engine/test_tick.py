"""The tick on its own: exactly-once per candle, bad market data writes nothing, gaps are skipped, a failing
strategy holds, no look-ahead, stops and sizing worked out by hand, drawdown from the persisted peak, and few
SQL statements per tick. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest
from engine_testing import (
    HOUR,
    T0,
    FakeExchange,
    PairsExchange,
    ScriptedStrategy,
    bundled_candles,
    candle,
    counting_statements,
    row_counts,
    snapshot,
)

from chalicelib.balances import change_balance
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import TickSettings, fixed_clock, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.models import AccountBalance, Position, TickLog, Trade, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.trading.strategies import EnterLong, Exit, get_strategy
from chalicelib.verify import verify


def _spec() -> BotSpec:
    return BotSpec(strategy="scripted", symbol="BTCUSDT", timeframe="1h", exchange="binance")


NO_SLIPPAGE = TickSettings()
NO_SLIPPAGE = replace(NO_SLIPPAGE, broker=replace(NO_SLIPPAGE.broker, slippage_bps=Decimal(0)))


def _session(engine, *, cursor_at: int | None = 0, balance: str = "1000") -> int:
    start = T0 + HOUR * cursor_at if cursor_at is not None else None
    return open_session(engine, _spec(), initial_balance=Decimal(balance), start_cursor=start).session_id


def _rows(engine, model):
    with read_transaction(engine) as db:
        return list(db.query(model).order_by(model.id))


def test_each_candle_is_applied_once_and_a_tick_with_nothing_new_changes_nothing(engine):
    feed = FakeExchange([candle(i, str(100 + i)) for i in range(6)])
    sid = _session(engine)
    strategy = ScriptedStrategy()
    first = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy)
    assert first.status == "applied"
    assert [o.candle_time for o in first.outcomes] == [T0 + HOUR, T0 + HOUR * 2, T0 + HOUR * 3]
    assert first.cursor == T0 + HOUR * 3  # the scheduled run reports the newest candle applied
    before = snapshot(engine, with_times=True)
    again = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy)
    assert again.status == "up_to_date"
    assert snapshot(engine, with_times=True) == before
    later = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 6), strategy=strategy)
    assert [o.candle_time for o in later.outcomes] == [T0 + HOUR * 4, T0 + HOUR * 5]
    assert (again.cursor, later.cursor) == (T0 + HOUR * 3, T0 + HOUR * 5)
    assert len(_rows(engine, TickLog)) == 5


def test_a_new_session_starts_at_the_newest_closed_candle_with_its_history_for_the_strategy(engine):
    feed = FakeExchange([candle(i, str(100 + i)) for i in range(10)])
    sid = _session(engine, cursor_at=None)
    strategy = ScriptedStrategy(warmup=4)
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 10), strategy=strategy)
    assert [o.candle_time for o in result.outcomes] == [T0 + HOUR * 9]
    assert strategy.seen == [(T0 + HOUR * 9, 4, False)]


BAD = {
    "zero price": lambda c: replace(c, low=Decimal(0)),
    "negative price": lambda c: replace(c, open=Decimal(-1), low=Decimal(-1)),
    "high below low": lambda c: replace(c, high=c.low - 1),
    "NaN": lambda c: replace(c, close=Decimal("NaN")),
}


@pytest.mark.parametrize("fault", [*BAD, "out of order", "duplicate"])
def test_a_bad_candle_stops_the_tick_with_a_clear_error_and_writes_nothing(engine, fault, caplog):
    candles = [candle(i, str(100 + i)) for i in range(6)]
    if fault == "out of order":
        candles[3], candles[4] = candles[4], candles[3]
    elif fault == "duplicate":
        candles.insert(4, candles[3])
    else:
        candles[3] = BAD[fault](candles[3])
    sid = _session(engine)
    before = snapshot(engine, with_times=True)
    result = tick_session(engine, sid, FakeExchange(candles), clock=fixed_clock(T0 + HOUR * 7),
                          strategy=ScriptedStrategy())
    assert result.status == "bad_candles"
    assert result.message.startswith("bad candle 2024-01-01T0")
    assert "\n" not in result.message
    assert snapshot(engine, with_times=True) == before


def test_a_gap_is_logged_and_skipped_over(engine):
    candles = [candle(i, str(100 + i)) for i in (0, 1, 2, 5, 6)]
    sid = _session(engine)
    result = tick_session(engine, sid, FakeExchange(candles), clock=fixed_clock(T0 + HOUR * 7),
                          strategy=ScriptedStrategy())
    assert result.status == "applied"
    assert result.gaps == ("2 candle(s) missing between 2024-01-01T02:00:00Z and 2024-01-01T05:00:00Z",)
    assert [o.candle_time.hour for o in result.outcomes] == [1, 2, 5, 6]
    assert "after a gap" in result.outcomes[2].detail


def test_a_strategy_that_raises_is_logged_and_the_session_holds_for_that_candle(engine):
    feed = FakeExchange([candle(i, str(100 + i)) for i in range(5)])
    sid = _session(engine)
    strategy = ScriptedStrategy(script={T0 + HOUR * 2: ZeroDivisionError("boom")})
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 5), strategy=strategy)
    assert [o.decision for o in result.outcomes] == ["hold", "error", "hold", "hold"]
    logs = _rows(engine, TickLog)
    assert logs[1].decision == "error" and "ZeroDivisionError: boom" in (logs[1].detail or "")
    assert len(_rows(engine, AccountBalance)) == 1  # nothing but the initial capital


def test_a_stop_loss_fills_at_the_stop_and_the_ledger_books_it_by_hand(engine):
    """Balance 1,000; enter at close 100 with stop 95, target 120, no slippage, fee 0.1%.
    Sizing: position cap 1000×10%/100 = 1; risk cap 1000×2%/(100−95) = 4; cash cap ≈ 9.99 → qty 1, cost 100,
    entry fee 0.10. Next candle's low 94 touches the stop: sell 1 @ 95 → P&L −5, exit fee 0.095 (money keeps 8
    places). Balance 1000 − 0.10 − 5 − 0.095 = 994.805."""
    candles = [candle(0, "100"), candle(1, "100"), candle(2, "97", open_="99", high="100", low="94"),
               candle(3, "97")]
    sid = _session(engine)
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(95), take_profit=Decimal(120))})
    result = tick_session(engine, sid, FakeExchange(candles), clock=fixed_clock(T0 + HOUR * 4), strategy=strategy,
                          settings=NO_SLIPPAGE)
    assert [o.decision for o in result.outcomes] == ["enter_long", "hold", "hold"]
    assert result.outcomes[1].closed == 1
    [trade] = _rows(engine, Trade)
    assert (trade.entry_price, trade.exit_price, trade.quantity) == (Decimal(100), Decimal(95), Decimal(1))
    assert (trade.realized_pnl, trade.fees, trade.exit_reason) == (Decimal(-5), Decimal("0.195"), "stop_loss")
    ledger = [(r.kind, r.delta, r.reference) for r in _rows(engine, AccountBalance)]
    pid = trade.position_id
    assert ledger == [
        ("initial", Decimal(1000), None),
        ("fee", Decimal("-0.1"), f"position:{pid}:open"),
        ("fee", Decimal("-0.095"), f"trade:{pid}:exit_fee"),
        ("trade_pnl", Decimal(-5), f"trade:{pid}:pnl"),
    ]
    assert result.balance == Decimal("994.805")
    # Units: 1,000 units at 1. After the entry the equity is 899.90 cash + 1 × 100 close = 999.90 → 0.9999 a unit;
    # after the stop 994.805 → 0.994805. The peak stays 1, so the drawdown is 0.5195 %.
    rows = _rows(engine, AccountBalance)
    assert [(r.units, r.unit_value, r.equity) for r in rows] == [
        (Decimal(1000), Decimal(1), Decimal(1000)),
        (Decimal(1000), Decimal("0.9999"), Decimal("999.9")),
        (Decimal(1000), Decimal("0.999805"), Decimal("999.805")),
        (Decimal(1000), Decimal("0.994805"), Decimal("994.805")),
    ]
    [session] = _rows(engine, TradingSession)
    assert (session.unit_value, session.peak_unit_value) == (Decimal("0.994805"), Decimal(1))
    assert rows[-1].update_reason == "trade_pnl_stop_loss"  # what the account's last reason reads
    assert verify(engine).ok


def _lose(engine, sid: int, amount: Decimal) -> None:
    """A realised trading loss booked straight through the ledger (as a closed trade's P&L row)."""
    from chalicelib import ledger
    from chalicelib.db.uow import write_transaction

    with write_transaction(engine) as db:
        s = ledger.lock_session(db, sid)
        assert s is not None
        ledger.post(db, s, kind="trade_pnl", delta=-amount, reason="test: a loss", reference="trade:9:pnl")


def test_entries_stop_past_the_drawdown_limit_measured_from_the_persisted_peak(engine):
    """Peak 1,000; a 25% loss: drawdown 25% ≥ 20% → the next entry is refused, but exits still happen."""
    candles = [candle(0, "100"), candle(1, "100"), candle(2, "100"), candle(3, "100"), candle(4, "100")]
    sid = _session(engine)
    _lose(engine, sid, Decimal(250))
    # Capital added during the drawdown is not a trading gain: entries stay blocked.
    change_balance("deposit", Decimal(1000), reason="top up", actor=Actor("owner"), session_id=sid, engine=engine)
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(120))})
    result = tick_session(engine, sid, FakeExchange(candles), clock=fixed_clock(T0 + HOUR * 5), strategy=strategy)
    assert result.outcomes[0].decision == "blocked"
    assert "drawdown 25.00%" in snapshot(engine)["ticks"][0][4]
    assert _rows(engine, Position) == []


def test_a_withdrawal_during_a_drawdown_does_not_block_entries(engine):
    """Value per unit 0.828 (17.2 % below the peak of 1): withdrawing 400 leaves it at 17.2 %, under the 20 %
    limit, so the next entry goes through (a peak kept in dollars made it 28.7 % and blocked entries)."""
    candles = [candle(i, "100") for i in range(3)]
    sid = _session(engine)
    _lose(engine, sid, Decimal(172))
    change_balance("withdraw", Decimal(400), reason="rent", actor=Actor("owner"), session_id=sid, engine=engine)
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(120))})
    result = tick_session(engine, sid, FakeExchange(candles), clock=fixed_clock(T0 + HOUR * 3), strategy=strategy)
    assert result.outcomes[0].decision == "enter_long"
    [session] = _rows(engine, TradingSession)
    assert session.peak_unit_value == Decimal(1)


def test_a_position_survives_a_restart_and_its_target_fires_later(engine):
    candles = [candle(0, "100"), candle(1, "100"), candle(2, "105"), candle(3, "110", high="121"), candle(4, "110")]
    sid = _session(engine)
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(95), take_profit=Decimal(120))})
    feed = FakeExchange(candles)
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 3), strategy=strategy)
    opening = open_session(engine, _spec())  # a restart
    assert opening.how == "found" and len(opening.positions) == 1
    assert any(line.startswith("Recovered position: BTCUSDT long @ $100.05") and "stop $95.00, target $120.00"
               in line for line in opening.lines())
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 5), strategy=ScriptedStrategy())
    assert result.trades_closed == 1
    [trade] = _rows(engine, Trade)
    assert (trade.exit_price, trade.exit_reason) == (Decimal(120), "take_profit")


def test_no_look_ahead_decisions_and_fills_up_to_t_do_not_depend_on_later_candles(engine):
    """The same 300 candles, then: nothing; the real continuation; a scrambled one — each applied in ONE tick,
    so the later candles sit in memory while the earlier ones are decided. Everything up to t is identical."""
    from chalicelib import ledger
    from chalicelib.db.uow import write_transaction

    data = list(bundled_candles(400))
    cut = 300
    rng = random.Random(3)
    strategy = get_strategy("ma_crossover")

    def scrambled(c):
        k = Decimal(rng.choice(["0.5", "0.9", "1.1", "2"]))
        return replace(c, open=c.open * k, high=c.high * k, low=c.low * k, close=c.close * k)

    variants = {
        "ends at t": data[:cut],
        "continues": data,
        "scrambled": data[:cut] + [scrambled(c) for c in data[cut:]],
    }
    outcomes = {}
    for name, candles in variants.items():
        spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="binance")
        sid = open_session(engine, spec, resume=False, start_cursor=candles[99].open_time).session_id
        result = tick_session(engine, sid, FakeExchange(candles), clock=fixed_clock(candles[-1].close_time("1h")),
                              strategy=strategy)
        assert result.candles_applied == len(candles) - 100
        outcomes[name] = result.outcomes[: cut - 100]
        with write_transaction(engine) as db:  # end it so the next variant gets its own session
            session = ledger.lock_session(db, sid)
            assert session is not None
            session.status = "ended"
    assert outcomes["ends at t"] == outcomes["continues"] == outcomes["scrambled"]
    assert sum(o.opened for o in outcomes["ends at t"]) >= 1


def test_a_one_candle_tick_with_an_open_position_sends_few_statements(engine):
    candles = [candle(i, "100") for i in range(5)]
    sid = _session(engine)
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(120))})
    feed = FakeExchange(candles)
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 3), strategy=strategy)
    with counting_statements(engine) as seen:
        result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=strategy)
    assert result.candles_applied == 1 and len(_rows(engine, Position)) == 1
    assert len(seen) <= 8, seen
    strategy.script[T0 + HOUR * 4] = Exit()
    with counting_statements(engine) as seen:
        result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 5), strategy=strategy)
    assert result.trades_closed == 1
    assert len(seen) <= 12, seen  # 10 inside the write transaction on SQLite (BEGIN IMMEDIATE included)


def test_one_candle_with_a_trade_writes_all_of_it_or_nothing_when_the_database_refuses(engine, caplog):
    """The ledger's unique reference stops a second booking; the failed tick rolls back every write."""
    candles = [candle(i, "100") for i in range(4)]
    sid = _session(engine)
    feed = FakeExchange(candles)
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(120))})
    from chalicelib import ledger
    from chalicelib.db.uow import write_transaction

    with write_transaction(engine) as db:  # a stray row claiming the reference the entry will need
        s = ledger.lock_session(db, sid)
        assert s is not None
        ledger.post(db, s, kind="fee", delta=Decimal(0), reason="test", reference="position:1:open")
    before = snapshot(engine, with_times=True)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 3), strategy=strategy)
    assert snapshot(engine, with_times=True) == before
    assert row_counts(engine)["ticks"] == 0


def test_after_a_manual_capital_increase_the_next_position_is_sized_from_the_new_balance(engine):
    """Balance 1,000 raised to 5,000 by hand (as POST /api/balance would). Entry at 100, stop 95, no slippage:
    position cap 5000×10%/100 = 5; risk cap 5000×2%/(100−95) = 20; cash ≈ 49.95 → qty 5, cost 500 (at the old
    balance it would have been qty 1, cost 100)."""
    from chalicelib.balances import change_balance
    from chalicelib.ledger import Actor

    sid = _session(engine)
    change_balance("set", Decimal(5000), reason="Capital increase", actor=Actor("owner"), session_id=sid,
                   engine=engine)
    strategy = ScriptedStrategy(script={T0 + HOUR: EnterLong(stop_loss=Decimal(95), take_profit=Decimal(120))})
    tick_session(engine, sid, FakeExchange([candle(0, "100"), candle(1, "100")]), clock=fixed_clock(T0 + HOUR * 2),
                 strategy=strategy, settings=NO_SLIPPAGE)
    [position] = _rows(engine, Position)
    assert (position.quantity, position.cost) == (Decimal(5), Decimal(500))
    assert verify(engine).ok


def test_a_late_pairs_candle_caught_up_does_not_move_the_accounts_market_time_back(engine):
    """The account's market time is the newest candle's close: BTC's 03:00 candle (closing 04:00) is applied while
    ETH has published only its 01:00 one; ETH's 02:00 candle (closing 03:00) caught up on the next tick leaves the
    account at 04:00, not 03:00."""
    spec = BotSpec(strategy="scripted", symbol="BTCUSDT,ETHUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=Decimal(1000), start_cursor=T0).session_id
    feed = PairsExchange({"BTCUSDT": [candle(i, "100") for i in (1, 2, 3)], "ETHUSDT": [candle(1, "2000")]})
    settings = replace(TickSettings(), symbol_wait_s=0)
    first = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=ScriptedStrategy(),
                         settings=settings)
    assert [(o.symbol, o.candle_time) for o in first.outcomes] == [
        ("BTCUSDT", T0 + HOUR), ("ETHUSDT", T0 + HOUR), ("BTCUSDT", T0 + HOUR * 2), ("BTCUSDT", T0 + HOUR * 3)]
    with read_transaction(engine) as db:
        assert db.get(TradingSession, sid).market_time == T0 + HOUR * 4

    feed.candles["ETHUSDT"].append(candle(2, "2001"))  # ETH publishes its 02:00 candle; its 03:00 one not yet
    late = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=ScriptedStrategy(),
                        settings=settings)
    assert [(o.symbol, o.candle_time) for o in late.outcomes] == [("ETHUSDT", T0 + HOUR * 2)]
    with read_transaction(engine) as db:
        assert db.get(TradingSession, sid).market_time == T0 + HOUR * 4
    assert verify(engine).ok


def test_an_exit_values_what_is_still_held_at_the_closes_of_its_own_tick(engine):
    """A wallet of 0.01 BTC (bought at 58,000) and two ETH positions, 0.5 bought at 2,900 (stop 2,813) and 0.2 at
    2,950 (stop 2,700), all marked at 60,000 / 3,000; no fee, no slippage. One tick: BTC's candle closes at 61,000
    (marked first: same time, BTC before ETH), then ETH's falls to 2,800 and closes at 2,850, stopping the 0.5 ETH
    out at 2,813 (P&L (2,813 − 2,900) × 0.5 = −43.50). The exit's rows value what is still held at this tick's
    closes, 0.01 × 61,000 + 0.2 × 2,850 = 1,180, not ETH's close before the tick (0.2 × 3,000): cash 7,377.38 +
    1,406.50 of proceeds = 8,783.88, equity 9,963.88."""
    import ledger_testing

    from chalicelib import ledger
    from chalicelib.trading.broker import BrokerConfig

    spec = BotSpec(strategy="scripted", symbol="BTCUSDT,ETHUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=Decimal(10_000), start_cursor=T0).session_id
    with write_transaction(engine) as db:
        s = ledger.lock_session(db, sid)
        more = Position(session_id=sid, symbol="ETHUSDT", side="long", status="open", entry_price=Decimal(2950),
                        quantity=Decimal("0.2"), cost=Decimal(590), entry_time=T0, fees=Decimal("0.59"),
                        stop_loss=Decimal(2700), take_profit=Decimal(3200), strategy="ml_basic")
        db.add(more)
        db.flush()
        ledger_testing.record_position_opened(db, s, cost=Decimal(590), fee=Decimal("0.59"),
                                              reference=f"position:{more.id}:open", now=T0)
        ledger_testing.hold_btc_and_eth(db, s, opened_at=T0, marked_at=T0 + HOUR, market_time=T0 + HOUR * 2,
                                        stops=True)
        assert (s.total_balance, s.available_balance) == (Decimal("9997.38"), Decimal("7377.38"))
    feed = PairsExchange({"BTCUSDT": [candle(2, "61000", open_="60000")],
                          "ETHUSDT": [candle(2, "2850", open_="2900", low="2800")]})
    settings = replace(TickSettings(), broker=BrokerConfig(fee_rate=Decimal(0), slippage_bps=Decimal(0)))
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 3), strategy=ScriptedStrategy(),
                          settings=settings)
    assert [(o.symbol, o.closed) for o in result.outcomes] == [("BTCUSDT", 0), ("ETHUSDT", 1)]
    pnl_row = _rows(engine, AccountBalance)[-1]
    assert (pnl_row.kind, pnl_row.delta) == ("trade_pnl", Decimal("-43.50"))
    assert (pnl_row.total_balance, pnl_row.available_balance) == (Decimal("9953.88"), Decimal("8783.88"))
    assert pnl_row.equity == Decimal("9963.88")
    assert verify(engine).ok
