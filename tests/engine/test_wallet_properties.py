"""Property: for random candles of two pairs, random risk settings and random deposits and withdrawals between
ticks, the real tick never breaches the wallet's caps at an entry, and equity is exactly cash plus Σ position values
after every tick. On SQLite and PostgreSQL (``ATB_PROPERTY_EXAMPLES`` examples each, default 15).

At each entry (tick row of the entering pair's candle, in the order the tick wrote them):

* the equity the entry was sized on, E = the row's equity + the entry fee (no slippage here, so buying at the close
  changes equity by the fee alone), is cash + every open position at its pair's close in force;
* the entry's notional ≤ ``max_position_fraction`` × E;
* gross exposure after it (recomputed from the positions and the closes in force, and equal to the row's exposure
  column) ≤ ``max_total_exposure`` × E, and its asset's exposure ≤ ``max_asset_exposure`` × E.

Half the examples trade BTCUSDT + ETHUSDT, half BTCUSDC + BTCUSDT (two pairs of one asset, so the per-asset cap
is shared)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import pytest
from engine_testing import HOUR, T0, PairsExchange, candle
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from chalicelib import accounting, ledger, valuation
from chalicelib.balances import change_balance
from chalicelib.bot.tick import TickSettings, fixed_clock, tick_session
from chalicelib.db.models import AccountBalance, Position, TickLog, TradingSession
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor
from chalicelib.trading.broker import BrokerConfig
from chalicelib.trading.position import PositionView
from chalicelib.trading.risk import RiskConfig
from chalicelib.trading.strategies import Decision, EnterLong, Hold
from chalicelib.trading.symbols import parse_symbol
from chalicelib.verify import verify

pytestmark = pytest.mark.slow  # about half a minute per database

D = Decimal
OWNER = Actor("owner")
HOURS = 14
START = {"BTCUSDT": D(20_000), "ETHUSDT": D(1_000), "BTCUSDC": D(20_010)}
_accounts = itertools.count()


@dataclass
class EnterWhenFlat:
    """Enters whenever it holds nothing, with the stop distance scripted for each hour (so some entries are sized
    by the risk per trade and others by a cap); the target is 4 % up."""

    stops: dict[datetime, Decimal]
    name: str = "scripted"
    warmup: int = 1

    def decide(self, candles, position: PositionView | None) -> Decision:  # type: ignore[no-untyped-def]
        last = candles[-1]
        if position is not None:
            return Hold()
        distance = self.stops.get(last.open_time, D("0.03"))
        return EnterLong(stop_loss=(last.close * (1 - distance)).quantize(D("0.01")),
                         take_profit=(last.close * D("1.04")).quantize(D("0.01")))


def _series(start: Decimal, moves: list[int]) -> list:  # type: ignore[type-arg]
    """Hourly candles: each close moves by ``moves[i]`` tenths of a percent; the range spans 1 % either side."""
    out, close = [], start
    for i, move in enumerate(moves, start=1):
        opened = close
        close = (close * (1 + D(move) / 1000)).quantize(D("0.01"))
        high = (max(opened, close) * D("1.01")).quantize(D("0.01"))
        low = (min(opened, close) * D("0.99")).quantize(D("0.01"))
        out.append(candle(i, str(close), open_=str(opened), high=str(high), low=str(low)))
    return out


moves = st.lists(st.integers(min_value=-40, max_value=40), min_size=HOURS, max_size=HOURS)
flows = st.lists(st.one_of(st.none(),
                           st.tuples(st.just("deposit"), st.integers(min_value=1, max_value=500_000)),
                           st.tuples(st.just("withdraw"), st.integers(min_value=1, max_value=90))),
                 min_size=HOURS, max_size=HOURS)
example = st.fixed_dictionaries({
    "pairs": st.sampled_from([("BTCUSDT", "ETHUSDT"), ("BTCUSDC", "BTCUSDT")]),
    "moves": st.tuples(moves, moves),
    "stops": st.lists(st.sampled_from([D("0.002"), D("0.01"), D("0.05"), D("0.2")]), min_size=HOURS,
                      max_size=HOURS),
    "flows": flows,  # per hour: nothing, a deposit in cents, or a withdrawal of that % of the cash
    "steps": st.lists(st.integers(min_value=1, max_value=3), min_size=HOURS, max_size=HOURS),
    "risk": st.builds(RiskConfig, max_position_fraction=st.sampled_from([D("0.10"), D("0.30"), D("0.60")]),
                      risk_per_trade=st.sampled_from([D("0.02"), D("0.10")]),
                      max_total_exposure=st.sampled_from([D("0.50"), D("0.35")]),
                      max_asset_exposure=st.sampled_from([D("0.25"), D("0.40")])),
})


# No shrinking: an example is a dozen ticks and a failure prints its whole case; shrinking one takes many minutes.
@settings(max_examples=int(os.environ.get("ATB_PROPERTY_EXAMPLES", "15")), deadline=None,
          phases=(Phase.explicit, Phase.reuse, Phase.generate), print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=example)
def test_random_candles_and_capital_changes_never_breach_the_caps_and_equity_adds_up(
        engine: Engine, case: dict) -> None:  # type: ignore[type-arg]
    pairs: tuple[str, str] = case["pairs"]
    risk: RiskConfig = case["risk"]
    broker = BrokerConfig(slippage_bps=D(0))  # the default fee, no slippage
    with write_transaction(engine) as db:
        session = ledger.start_session(db, strategy="scripted", symbol=",".join(pairs), timeframe="1h",
                                       exchange=f"prop{next(_accounts)}", mode="paper", initial_balance=D(10_000))
        session.candle_cursor = T0
        sid = session.id
    feed = PairsExchange({s: _series(START[s], m) for s, m in zip(pairs, case["moves"], strict=True)})
    strategy = EnterWhenFlat({T0 + HOUR * (i + 1): d for i, d in enumerate(case["stops"])})
    tick_settings = replace(TickSettings(), broker=broker, risk=risk, symbol_wait_s=0)
    hour = 0
    for step, flow in zip(case["steps"], case["flows"], strict=True):
        if hour >= HOURS:
            break
        hour = min(HOURS, hour + step)
        result = tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * (hour + 1)), strategy=strategy,
                              settings=tick_settings)
        assert result.status in ("applied", "up_to_date"), result.message
        _equity_adds_up(engine, sid)
        if flow is not None and _capital_change(engine, sid, *flow):
            _equity_adds_up(engine, sid, changed=True)
    entries = _check_entries(engine, sid, pairs, risk)
    assert entries >= 1  # it really traded
    [mine] = [r for r in verify(engine).sessions if r.session_id == sid]
    assert mine.ok, mine.problems


def _capital_change(engine: Engine, sid: int, op: str, amount: int) -> bool:
    """A deposit of ``amount`` cents, or a withdrawal of ``amount`` % of the cash (when that is a cent or more)."""
    if op == "deposit":
        change_balance("deposit", D(amount) / 100, reason="more capital", actor=OWNER, session_id=sid, engine=engine)
        return True
    with read_transaction(engine) as db:
        session = db.get(TradingSession, sid)
        assert session is not None
        cash = session.available_balance
    out = (cash * amount / 100).quantize(D("0.01"))
    if out <= 0:
        return False
    change_balance("withdraw", out, reason="take some out", actor=OWNER, session_id=sid, engine=engine)
    return True


def _equity_adds_up(engine: Engine, sid: int, *, changed: bool = False) -> None:
    """Equity = available + Σ position values (each at its pair's mark), exactly; the newest tick row (or, just
    after a capital change, its ledger row) recorded the same equity; units × value per unit reproduce it."""
    with read_transaction(engine) as db:
        session = db.get(TradingSession, sid)
        assert session is not None
        positions = list(db.execute(select(Position).where(Position.session_id == sid,
                                                           Position.status == "open")).scalars())
        items = ledger.holdings(positions, session.marks)
        equity = session.available_balance + valuation.positions_value(items)
        assert equity == ledger.equity_of(session, positions)
        assert sum(line.value for line in valuation.breakdown(session.available_balance, items, session.marks,
                                                              session.symbol.split(","))) == equity
        assert accounting.units_reproduce_equity(ledger.unit_state(session), equity)
        newest_row = db.execute(select(AccountBalance).where(AccountBalance.session_id == sid)
                                .order_by(AccountBalance.id.desc()).limit(1)).scalar_one()
        newest_tick = db.execute(select(TickLog).where(TickLog.session_id == sid)
                                 .order_by(TickLog.id.desc()).limit(1)).scalar_one_or_none()
        if changed:  # the capital change's own row recorded the equity just after it
            assert newest_row.kind in ("deposit", "withdrawal") and newest_row.equity == equity
        elif newest_tick is not None:  # else the newest candle's row did
            assert newest_tick.equity == equity


def _check_entries(engine: Engine, sid: int, pairs: tuple[str, str], risk: RiskConfig) -> int:
    """Walk the tick rows in the order they were written; at each row that opened a position check the caps
    against the equity it was sized on. Returns how many entries were checked."""
    order = {s: i for i, s in enumerate(pairs)}
    with read_transaction(engine) as db:
        ticks = list(db.execute(select(TickLog).where(TickLog.session_id == sid).order_by(TickLog.id)).scalars())
        positions = list(db.execute(select(Position).where(Position.session_id == sid)
                                    .order_by(Position.id)).scalars())
        fees = {r.reference: -r.delta for r in db.execute(
            select(AccountBalance).where(AccountBalance.session_id == sid, AccountBalance.kind == "fee")).scalars()}

    def key(symbol: str, when: datetime) -> tuple[datetime, int]:
        return when, order[symbol]

    closes: dict[str, Decimal] = {}
    checked = 0
    for row in ticks:
        closes[row.symbol] = row.close_price
        here = key(row.symbol, row.candle_time)
        held = [p for p in positions if key(p.symbol, p.entry_time) <= here
                and (p.exit_time is None or key(p.symbol, p.exit_time) > here)]
        values = {p.id: _value(p.symbol, p.quantity, closes[p.symbol]) for p in held}
        gross = sum(values.values(), D(0))
        assert row.exposure == gross, (row.symbol, row.candle_time)
        for p in (p for p in held if key(p.symbol, p.entry_time) == here):
            equity = row.equity + fees[ledger.position_reference(p.id)]  # what the entry was sized on
            asset = parse_symbol(p.symbol).base
            in_asset = sum((v for q in held if parse_symbol(q.symbol).base == asset for v in [values[q.id]]), D(0))
            where = f"{p.symbol} entry at {p.entry_time}: equity {equity}"
            assert p.cost <= risk.max_position_fraction * equity, f"{where}, notional {p.cost}"
            assert gross <= risk.max_total_exposure * equity, f"{where}, gross exposure {gross}"
            assert in_asset <= risk.max_asset_exposure * equity, f"{where}, {asset} exposure {in_asset}"
            checked += 1
    return checked


def _value(symbol: str, quantity: Decimal, close: Decimal) -> Decimal:
    """A long position's value at a close, as valuation.holdings computes it."""
    [item] = valuation.holdings([(symbol, "long", quantity, D(0))], {symbol: valuation.Mark(close, T0)})
    return item.value
