"""Risk across one wallet, worked out by hand, through the real tick on SQLite and PostgreSQL: each of the four
caps binding (10 % per position, 2 % risk per trade, 50 % total exposure, 25 % per asset), a pair quoted in BTC
valued through BTCUSDT, the exposure after each entry, and the exchange's lot step and minimum notional.

Fees and slippage are 0 here so that every figure is a short sum; sizing with fees is in
tests/unit/test_trading_broker_and_risk.py. Every account starts with $10,000 and the ledger verifies."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from engine_testing import HOUR, T0, PairsExchange, candle, snapshot

from chalicelib import ledger, valuation
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import TickResult, TickSettings, fixed_clock, tick_session
from chalicelib.bots import BotSpec
from chalicelib.db.models import Position, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.money import quantize_money
from chalicelib.trading.broker import BrokerConfig
from chalicelib.trading.markets import MarketRules
from chalicelib.trading.position import PositionView
from chalicelib.trading.risk import RiskConfig, size_position
from chalicelib.trading.strategies import Decision, EnterLong, Hold
from chalicelib.verify import verify

D = Decimal
NO_COSTS = BrokerConfig(fee_rate=D(0), slippage_bps=D(0))


@dataclass
class ByPrice:
    """Enters at the candles whose (open time, close) is scripted — so each pair gets its own stop."""

    entries: dict[tuple[datetime, Decimal], Decimal] = field(default_factory=dict)  # → stop loss
    name: str = "scripted"
    warmup: int = 1

    def decide(self, candles, position: PositionView | None) -> Decision:  # type: ignore[no-untyped-def]
        last = candles[-1]
        stop = self.entries.get((last.open_time, last.close))
        if stop is None or position is not None:
            return Hold()
        return EnterLong(stop_loss=stop, take_profit=last.close * 10)


def _tick(engine, symbols: str, closes: dict[str, list[str]], entries: dict[tuple[int, str], str],  # type: ignore[no-untyped-def]
          risk: RiskConfig | None = None, rules: dict[str, MarketRules] | None = None) -> TickResult:
    """A $10,000 wallet trading ``symbols``; candle i of each pair closes at ``closes[pair][i - 1]``; an entry at
    (i, close) with its stop. One tick applies them all."""
    spec = BotSpec(strategy="scripted", symbol=symbols, timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=D(10_000), start_cursor=T0).session_id
    feed = PairsExchange({s: [candle(i + 1, c) for i, c in enumerate(cs)] for s, cs in closes.items()},
                         rules=rules or {})
    strategy = ByPrice({(T0 + HOUR * i, D(close)): D(stop) for (i, close), stop in entries.items()})
    settings = replace(TickSettings(), broker=NO_COSTS, risk=risk or RiskConfig())
    hours = max(len(cs) for cs in closes.values())
    result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * (hours + 1)), strategy=strategy,
                          settings=settings)
    assert result.status == "applied", result.message
    return result


def _buys(result: TickResult) -> list[tuple[str, Decimal, Decimal, str]]:
    return [(o.symbol, f.quantity, f.cost, f.binding) for o in result.outcomes for f in o.fills if f.side == "buy"]


def _wallet(engine) -> tuple[TradingSession, list[valuation.Holding]]:  # type: ignore[no-untyped-def]
    with read_transaction(engine) as db:
        session = db.query(TradingSession).one()
        positions = db.query(Position).filter_by(status="open").order_by(Position.id).all()
        return session, ledger.holdings(positions, session.marks)


def _exposure_column(engine) -> list[tuple[str, Decimal]]:  # type: ignore[no-untyped-def]
    return [(t[10], t[11]) for t in snapshot(engine)["ticks"]]


def test_the_position_cap_and_the_risk_per_trade_each_bind(engine):
    # Equity E = $10,000. BTCUSDT closes at 20,000, stop 19,000 (risk $1,000 per BTC):
    #   position cap 10 % × 10,000 / 20,000 = 0.05 · risk 2 % × 10,000 / 1,000 = 0.2 · total 50 %: 5,000 / 20,000
    #   = 0.25 · BTC 25 %: 2,500 / 20,000 = 0.125 · cash 10,000 / 20,000 = 0.5  →  0.05 BTC ($1,000), position cap.
    # ETHUSDT then closes at 1,000, stop 500 (risk $500 per ETH); E is still 9,000 cash + 0.05 × 20,000 = 10,000:
    #   position cap 1,000 / 1,000 = 1 · risk 200 / 500 = 0.4 · total (5,000 − 1,000) / 1,000 = 4 · ETH 2,500 /
    #   1,000 = 2.5 · cash 9,000 / 1,000 = 9  →  0.4 ETH ($400), risk per trade.
    result = _tick(engine, "BTCUSDT,ETHUSDT", {"BTCUSDT": ["20000"], "ETHUSDT": ["1000"]},
                   {(1, "20000"): "19000", (1, "1000"): "500"})
    assert _buys(result) == [("BTCUSDT", D("0.05"), D(1000), "position_cap"), ("ETHUSDT", D("0.4"), D(400), "risk_cap")]
    # Exposure after each candle (the tick row's column): 1,000, then 1,000 + 400 = 1,400
    assert _exposure_column(engine) == [("BTCUSDT", D(1000)), ("ETHUSDT", D(1400))]
    session, items = _wallet(engine)
    # cash 10,000 − 1,000 − 400 = 8,600; equity 8,600 + 1,000 + 400 = 10,000; gross 1,400 = 14 % of equity
    assert session.available_balance == D(8600)
    assert valuation.exposure(session.available_balance, items) == [
        valuation.ExposureLine("BTC", D(1000), D(1000), D("0.1"), D("0.1")),
        valuation.ExposureLine("ETH", D(400), D(400), D("0.04"), D("0.04")),
        valuation.ExposureLine("total", D(1400), D(1400), D("0.14"), D("0.14")),
    ]
    assert verify(engine).ok


def test_the_total_exposure_cap_binds(engine):
    # Position cap raised to 40 % and the asset cap to 45 % so that the 50 % total binds. Stops are near, so the
    # 2 % risk never does. E = 10,000.
    # BTCUSDT 20,000, stop 19,900 (risk 100/BTC): position 4,000 / 20,000 = 0.2 · risk 200 / 100 = 2 · total
    #   5,000 / 20,000 = 0.25 · BTC 4,500 / 20,000 = 0.225 · cash 0.5  →  0.2 BTC ($4,000), position cap.
    # ETHUSDT 1,000, stop 995 (risk 5/ETH); E = 6,000 + 0.2 × 20,000 = 10,000: position 4,000 / 1,000 = 4 · risk
    #   200 / 5 = 40 · total (5,000 − 4,000) / 1,000 = 1 · ETH 4,500 / 1,000 = 4.5 · cash 6  →  1 ETH ($1,000),
    #   total exposure.
    risk = RiskConfig(max_position_fraction=D("0.40"), max_asset_exposure=D("0.45"))
    result = _tick(engine, "BTCUSDT,ETHUSDT", {"BTCUSDT": ["20000"], "ETHUSDT": ["1000"]},
                   {(1, "20000"): "19900", (1, "1000"): "995"}, risk=risk)
    assert _buys(result) == [("BTCUSDT", D("0.2"), D(4000), "position_cap"),
                             ("ETHUSDT", D("1"), D(1000), "exposure_cap")]
    # gross exposure 4,000 + 1,000 = 5,000: exactly 50 % of 10,000
    assert _exposure_column(engine) == [("BTCUSDT", D(4000)), ("ETHUSDT", D(5000))]
    session, items = _wallet(engine)
    total = valuation.exposure(session.available_balance, items)[-1]
    assert (total.gross, total.gross_share) == (D(5000), D("0.5"))
    assert verify(engine).ok


def test_the_per_asset_cap_binds_across_two_pairs_of_one_asset(engine):
    # BTCUSDC and BTCUSDT are both BTC. Position cap raised to 20 % so that the 25 % on BTC binds; both close at
    # 20,000 with a stop at 19,000; the bot's order is alphabetical, so BTCUSDC goes first. E = 10,000.
    # BTCUSDC: position 2,000 / 20,000 = 0.1 · risk 200 / 1,000 = 0.2 · total 5,000 / 20,000 = 0.25 · BTC 2,500 /
    #   20,000 = 0.125 · cash 0.5  →  0.1 BTC ($2,000), position cap.
    # BTCUSDT: E = 8,000 + 0.1 × 20,000 = 10,000, BTC held 2,000: position 0.1 · risk 0.2 · total (5,000 − 2,000)
    #   / 20,000 = 0.15 · BTC (2,500 − 2,000) / 20,000 = 0.025 · cash 0.4  →  0.025 BTC ($500), per asset.
    result = _tick(engine, "BTCUSDC,BTCUSDT", {"BTCUSDC": ["20000"], "BTCUSDT": ["20000"]},
                   {(1, "20000"): "19000"}, risk=RiskConfig(max_position_fraction=D("0.20")))
    assert _buys(result) == [("BTCUSDC", D("0.1"), D(2000), "position_cap"),
                             ("BTCUSDT", D("0.025"), D(500), "asset_cap")]
    session, items = _wallet(engine)
    # BTC: 0.125 BTC worth 2,500 = 25 % of 10,000; one asset line for both pairs
    assert valuation.exposure(session.available_balance, items) == [
        valuation.ExposureLine("BTC", D(2500), D(2500), D("0.25"), D("0.25")),
        valuation.ExposureLine("total", D(2500), D(2500), D("0.25"), D("0.25")),
    ]
    assert verify(engine).ok


def test_a_pair_quoted_in_btc_is_valued_through_btcusdt(engine):
    # ETHBTC closes at 0.05 BTC while BTCUSDT closes at 32,000: ETH = 0.05 × 32,000 = $1,600. Entry stop $1,500
    # (the strategy sees ETHBTC in dollars). E = 10,000: position 1,000 / 1,600 = 0.625 · risk 200 / 100 = 2 · total
    # 5,000 / 1,600 · ETH 2,500 / 1,600 · cash 10,000 / 1,600  →  0.625 ETH ($1,000), position cap.
    # Candle 2: BTCUSDT 30,000, ETHBTC 0.055 → ETH = 0.055 × 30,000 = $1,650; the position is worth
    # 0.625 × 1,650 = 1,031.25; equity = 9,000 + 1,031.25 = 10,031.25; its share 1,031.25 / 10,031.25 = 0.102804.
    result = _tick(engine, "BTCUSDT,ETHBTC", {"BTCUSDT": ["32000", "30000"], "ETHBTC": ["0.05", "0.055"]},
                   {(1, "1600.00000000"): "1500"})
    assert _buys(result) == [("ETHBTC", D("0.625"), D(1000), "position_cap")]
    assert [(o.symbol, o.close) for o in result.outcomes] == [
        ("BTCUSDT", D(32000)), ("ETHBTC", D(1600)), ("BTCUSDT", D(30000)), ("ETHBTC", D(1650))]
    assert result.equity == D("10031.25")
    session, items = _wallet(engine)
    assert session.marks["ETHBTC"] == valuation.Mark(D(1650), T0 + HOUR * 2)
    assert items == [valuation.Holding("ETHBTC", "ETH", D("0.625"), D("1031.25"))]
    symbols = ("BTCUSDT", "ETHBTC")
    assert valuation.breakdown(session.available_balance, items, session.marks, symbols) == [
        valuation.AssetLine("USD", D(9000), D(1), D(9000), D("0.897196"), "cash, USD"),  # 9,000 / 10,031.25
        valuation.AssetLine("ETH", D("0.625"), D(1650), D("1031.25"), D("0.102804"), "ETHBTC close × BTCUSDT close"),
    ]
    assert [(t[10], t[2], t[6], t[11]) for t in snapshot(engine)["ticks"]] == [
        ("BTCUSDT", D(32000), D(10000), D(0)), ("ETHBTC", D(1600), D(10000), D(1000)),
        ("BTCUSDT", D(30000), D(10000), D(1000)),  # ETH still at its 1,600 mark until ETHBTC's candle 2
        ("ETHBTC", D(1650), D("10031.25"), D("1031.25"))]
    assert verify(engine).ok


def test_the_lot_step_rounds_down_and_the_minimum_notional_refuses(engine):
    # BTCUSDT 23,456.78, stop 22,000, lot step 0.001: position cap 1,000 / 23,456.78 = 0.04263… → 0.042 BTC (down to
    # the step), cost 0.042 × 23,456.78 = $985.18476.
    # ETHUSDT 1,000, stop 500: risk 200 / 500 = 0.4 ETH = $400, below the exchange's $500 minimum notional: no
    # order, and the tick row says why.
    rules = {"BTCUSDT": MarketRules(step=D("0.001"), min_quantity=D("0.001"), min_notional=D(5)),
             "ETHUSDT": MarketRules(step=D("0.0001"), min_notional=D(500))}
    result = _tick(engine, "BTCUSDT,ETHUSDT", {"BTCUSDT": ["23456.78"], "ETHUSDT": ["1000"]},
                   {(1, "23456.78"): "22000", (1, "1000"): "500"}, rules=rules)
    assert _buys(result) == [("BTCUSDT", D("0.042"), D("985.18476"), "position_cap")]
    eth = result.outcomes[1]
    assert (eth.symbol, eth.decision, eth.fills) == ("ETHUSDT", "hold", ())
    assert "entry skipped: the size is below the exchange's minimum order" in eth.detail
    assert verify(engine).ok


def test_a_minimum_quantity_refuses_an_order_below_it(engine):
    # ETHUSDT 1,000, stop 500: 0.4 ETH by the 2 % risk; the exchange's minimum is 0.5 ETH → no order.
    rules = {"ETHUSDT": MarketRules(step=D("0.0001"), min_quantity=D("0.5"))}
    result = _tick(engine, "BTCUSDT,ETHUSDT", {"BTCUSDT": ["20000"], "ETHUSDT": ["1000"]},
                   {(1, "1000"): "500"}, rules=rules)
    assert _buys(result) == []
    assert "below the exchange's minimum order" in result.outcomes[1].detail


def test_a_capped_notional_never_rounds_above_its_cap():
    # Found by tests/engine/test_wallet_properties.py. E = 9,991.00489959, so 10 % of it is 999.100489959 — a
    # figure finer than the money scale. At 1,000 a coin the position cap allowed 0.999100489959 coins, whose
    # notional 999.100489959 the fill rounds (half even, 8 places) UP to 999.10048996: 0.000000001 over the cap.
    # Each cap's budget is now rounded DOWN to the money scale first: 999.10048995 → 0.99910048995 coins, notional
    # 999.10048995 ≤ 999.100489959. The same holds for the total and per-asset budgets (E × cap − exposure).
    equity = D("9991.00489959")
    sizing = size_position(equity, equity, D(1000), D(999), fee_rate=D("0.001"))
    assert (sizing.quantity, sizing.binding) == (D("0.99910048995"), "position_cap")
    assert quantize_money(sizing.quantity * D(1000)) <= equity * D("0.10")
    # total exposure: E × 0.5 − 3,995.50244978 = 1,000.000000015 allowed 1.000000000015 coins (notional rounded up
    # to 1,000.00000002); now the budget is 1,000.00000001 → 1.00000000001 coins, notional 1,000.00000001
    config = RiskConfig(max_position_fraction=D(1), risk_per_trade=D(1), max_asset_exposure=D(1))
    sizing = size_position(equity, equity, D(1000), D(1), fee_rate=D(0), config=config,
                           exposure=D("3995.50244978"))
    assert (sizing.quantity, sizing.binding) == (D("1.00000000001"), "exposure_cap")
    assert quantize_money(sizing.quantity * D(1000)) <= equity * D("0.5") - D("3995.50244978")
    # and per asset: E × 0.25 − 1,497.75122489 = 1,000.0000000075 → budget 1,000.00000000 → 1 coin
    config = RiskConfig(max_position_fraction=D(1), risk_per_trade=D(1), max_total_exposure=D(1))
    sizing = size_position(equity, equity, D(1000), D(1), fee_rate=D(0), config=config,
                           asset_exposure=D("1497.75122489"))
    assert (sizing.quantity, sizing.binding) == (D(1), "asset_cap")
