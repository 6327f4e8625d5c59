"""``atb backtest``: the same engine and tick as live trading, over recorded candles, into a throwaway SQLite
database — so a backtest's numbers are what the bot would have booked, fees and all."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from chalicelib.bots import BotSpec
from chalicelib.db.engine import get_engine
from chalicelib.db.migrate import upgrade
from chalicelib.db.models import AccountBalance, Trade, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.engine.runner import replay_clock
from chalicelib.engine.sessions import open_session
from chalicelib.engine.tick import DEFAULT_MAX_CANDLES_PER_TICK, TickSettings, tick_session
from chalicelib.money import ZERO, quantize_money
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.strategies import get_strategy


class BacktestError(ValueError):
    """The backtest cannot run as asked; one line says why."""


@dataclass(frozen=True)
class BacktestSummary:
    strategy: str
    symbol: str
    timeframe: str
    first_candle: datetime
    last_candle: datetime
    candles: int
    initial_balance: Decimal
    final_balance: Decimal
    final_equity: Decimal
    max_drawdown_pct: Decimal
    trades: int
    winning_trades: int
    fees: Decimal
    buy_and_hold_pct: Decimal
    verified: bool
    data: str = ""

    @property
    def return_pct(self) -> Decimal:
        if self.initial_balance == 0:
            return ZERO
        return (self.final_equity - self.initial_balance) / self.initial_balance * 100


def run_backtest(
    strategy: str,
    symbol: str = "BTCUSDT",
    timeframe: str = "1h",
    *,
    days: int,
    initial_balance: Decimal,
    data: Path | None = None,
    settings: TickSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestSummary:
    """Replay the last ``days`` of recorded candles through the engine; ``progress(done, total)`` after each tick."""
    spec = BotSpec(strategy=strategy, symbol=symbol, timeframe=timeframe, exchange="replay")
    strategy_obj = get_strategy(spec.strategy)
    feed = ReplayFeed(data, symbol=spec.symbol, timeframe=timeframe)
    candles = feed.all_candles(spec.symbol, timeframe)
    step = spec_step(timeframe)
    wanted = max(1, (days * 86_400) // step)
    if days < 1:
        raise BacktestError("--days must be at least 1")
    start = max(0, len(candles) - wanted)
    if start < 1:
        raise BacktestError(f"the data holds {len(candles)} candles; ask for fewer days")
    tested = candles[start:]
    settings = settings or TickSettings(max_candles_per_tick=DEFAULT_MAX_CANDLES_PER_TICK)
    clock = replay_clock(feed, spec.symbol, timeframe, settings.max_candles_per_tick)
    with tempfile.TemporaryDirectory(prefix="atb-backtest-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'backtest.sqlite3'}"
        engine = get_engine(url)
        try:
            upgrade(engine)
            opening = open_session(engine, spec, initial_balance=initial_balance, resume=False,
                                   start_cursor=candles[start - 1].open_time)
            peak_equity, max_dd = initial_balance, ZERO
            equity = initial_balance
            done = 0
            while True:
                result = tick_session(engine, opening.session_id, feed, clock=clock, strategy=strategy_obj,
                                      settings=settings)
                if result.status != "applied":
                    if result.status in ("bad_candles", "feed_error"):
                        raise BacktestError(result.message)
                    break
                for outcome in result.outcomes:
                    equity = outcome.equity
                    peak_equity = max(peak_equity, equity)
                    if peak_equity > 0:
                        max_dd = max(max_dd, (peak_equity - equity) / peak_equity)
                done += result.candles_applied
                if progress is not None:
                    progress(done, len(tested))
            with read_transaction(engine) as db:
                session = db.get(TradingSession, opening.session_id)
                assert session is not None
                nets = [pnl - fee for pnl, fee in db.execute(
                    select(Trade.realized_pnl, Trade.fees).where(Trade.session_id == session.id)
                ).all()]
                fee_rows = db.execute(
                    select(AccountBalance.delta).where(AccountBalance.session_id == session.id,
                                                       AccountBalance.kind == "fee")
                ).scalars()
                fees = -sum(fee_rows, ZERO)
                final_balance = session.total_balance
            from chalicelib.verify import verify

            verified = verify(engine).ok
        finally:
            engine.dispose()
    first, last = tested[0], tested[-1]
    buy_hold = (last.close - first.close) / first.close * 100 if first.close else ZERO
    return BacktestSummary(
        strategy=strategy, symbol=spec.symbol, timeframe=timeframe, first_candle=first.open_time,
        last_candle=last.open_time, candles=len(tested), initial_balance=initial_balance,
        final_balance=final_balance, final_equity=equity, max_drawdown_pct=quantize_money(max_dd * 100),
        trades=len(nets), winning_trades=sum(1 for n in nets if n > 0), fees=fees,
        buy_and_hold_pct=quantize_money(buy_hold), verified=verified, data=feed.describe(),
    )


def spec_step(timeframe: str) -> int:
    from chalicelib.trading.candles import timeframe_to_timedelta

    return int(timeframe_to_timedelta(timeframe).total_seconds())
