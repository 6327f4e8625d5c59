"""Test support for the engine: fake exchanges, scripted strategies, database snapshots, statement counting."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, select

from chalicelib.db.models import AccountBalance, Position, TickLog, Trade, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.trading.candles import Candle, timeframe_to_timedelta
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies import Decision, EnterLong, Exit, Hold

HOUR = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def bundled_candles(n: int | None = None) -> tuple[Candle, ...]:
    candles = ReplayFeed().all_candles("BTCUSDT", "1h")
    return candles if n is None else candles[:n]


def write_csv(path: Path, candles: Sequence[Candle]) -> Path:
    """Candles as the replay feed's CSV (``BTCUSDT_1h.csv`` so symbol and timeframe are inferred)."""
    lines = ["timestamp_ms,open,high,low,close,volume"]
    for c in candles:
        ms = int((c.open_time - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
        lines.append(f"{ms},{c.open},{c.high},{c.low},{c.close},{c.volume}")
    path.write_text("\n".join(lines) + "\n")
    return path


def candle(i: int, close: str | Decimal, *, open_: str | None = None, high: str | None = None,
           low: str | None = None, volume: str = "10", start: datetime = T0) -> Candle:
    """Candle number ``i`` (hourly from ``start``); open/high/low default around the close."""
    c = Decimal(close)
    o = Decimal(open_) if open_ is not None else c
    h = Decimal(high) if high is not None else max(o, c)
    lo = Decimal(low) if low is not None else min(o, c)
    return Candle(start + HOUR * i, o, h, lo, c, Decimal(volume))


@dataclass
class FakeExchange:
    """An exchange serving a fixed list of candles (validation is the engine's job, so anything goes)."""

    candles: list[Candle]
    timeframe: str = "1h"
    calls: int = 0
    fail_with: Exception | None = None
    before_return: Callable[[], None] | None = None

    def fetch_closed_candles(self, symbol: str, timeframe: str, since: datetime | None, limit: int,
                             now: datetime) -> list[Candle]:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        step = timeframe_to_timedelta(timeframe)
        closed = [c for c in self.candles if c.open_time + step <= now and (since is None or c.open_time > since)]
        result = closed[:limit] if since is not None else closed[-limit:]
        if self.before_return is not None:
            self.before_return()
        return result


class ReplayExchange(ReplayFeed):
    """The bundled data served like an exchange: whatever is closed at ``now``. Counts calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.exchange_id = "binance"

    def fetch_closed_candles(self, symbol: str, timeframe: str, since: datetime | None, limit: int,
                             now: datetime) -> list[Candle]:
        self.calls += 1
        return super().fetch_closed_candles(symbol, timeframe, since, limit, now)


@dataclass
class ScriptedStrategy:
    """Decides from a script keyed by the deciding candle's open time; holds otherwise. Records what it saw."""

    script: dict[datetime, Decision | Exception] = field(default_factory=dict)
    name: str = "scripted"
    warmup: int = 1
    seen: list[tuple[datetime, int, bool]] = field(default_factory=list)
    gate: threading.Event | None = None

    def decide(self, candles: Sequence[Candle], position: PositionView | None) -> Decision:
        t = candles[-1].open_time
        self.seen.append((t, len(candles), position is not None))
        if self.gate is not None:
            self.gate.wait(10)
        action = self.script.get(t, Hold())
        if isinstance(action, Exception):
            raise action
        if isinstance(action, EnterLong) and position is not None:
            return Hold()
        if isinstance(action, Exit) and position is None:
            return Hold()
        return action


# ----------------------------------------------------------------------------------------------- snapshots


def snapshot(engine: Engine, *, with_times: bool = False) -> dict[str, Any]:
    """Everything a trader cares about, in order, with position ids replaced by their rank (a killed
    Postgres transaction burns sequence values, so raw ids may differ between equivalent histories)."""
    with read_transaction(engine) as db:
        sessions = list(db.execute(select(TradingSession).order_by(TradingSession.id)).scalars())
        positions = list(db.execute(select(Position).order_by(Position.id)).scalars())
        rank = {p.id: i for i, p in enumerate(positions)}

        def ref(text: str | None) -> str | None:
            if text is None:
                return None
            parts = text.split(":")
            if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) in rank:
                parts[1] = f"#{rank[int(parts[1])]}"
            return ":".join(parts)

        ledger = [
            (r.kind, r.delta, r.total_balance, r.available_balance, r.reserved_balance, ref(r.reference),
             r.asset_balances, r.update_reason, r.units, r.unit_value, r.performance_index, r.equity, r.market_time)
            for r in db.execute(select(AccountBalance).order_by(AccountBalance.id)).scalars()
        ]
        pos = [
            (p.symbol, p.side, p.status, p.entry_price, p.quantity, p.cost, p.stop_loss, p.take_profit,
             p.entry_time, p.exit_price, p.exit_time, p.exit_reason, p.realized_pnl, p.fees)
            for p in positions
        ]
        trades = [
            (rank.get(t.position_id or -1), t.entry_price, t.exit_price, t.quantity, t.entry_time, t.exit_time,
             t.realized_pnl, t.fees, t.exit_reason, t.market_time)
            for t in db.execute(select(Trade).order_by(Trade.id)).scalars()
        ]
        ticks = [
            (t.session_id, t.candle_time, t.close_price, t.decision, t.detail, t.market_time, t.equity, t.units,
             t.unit_value, t.performance_index, t.symbol, t.exposure)
            for t in db.execute(select(TickLog).order_by(TickLog.session_id, TickLog.candle_time,
                                                         TickLog.symbol)).scalars()
        ]
        sess = [
            (s.strategy, s.symbol, s.status, s.total_balance, s.available_balance, s.reserved_balance,
             s.units, s.unit_value, s.peak_unit_value, s.series_base, s.net_contributions, s.marks, s.market_time,
             s.candle_cursor, s.version) + ((s.last_tick_at,) if with_times else ())
            for s in sessions
        ]
    return {"sessions": sess, "ledger": ledger, "positions": pos, "trades": trades, "ticks": ticks}


def row_counts(engine: Engine) -> dict[str, int]:
    snap = snapshot(engine, with_times=True)
    return {k: len(v) for k, v in snap.items()}


@contextmanager
def counting_statements(engine: Engine) -> Iterator[list[str]]:
    """Collect every SQL statement the engine sends while the block runs."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split())[:120])

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
