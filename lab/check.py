"""``atb check STRATEGY``: does the strategy only ever use the past, and does its declared warm-up suffice?

**No look-ahead.** The strategy is backtested through the real engine on the recorded candles, then again on the
same candles cut at each of many cut points ``t`` (nothing after ``t``): every candle up to ``t`` must get the same
decision, the same fills and the same balance and equity in both runs, whatever followed ``t``. The engine holds
up to a tick's worth of later candles in memory while it decides (a 500-candle catch-up), so a strategy that finds
them — through a cache, a global, the call stack — decides differently once they are gone, and the first candle
where that happens is reported.

**Warm-up stability.** At sampled candles the strategy decides once from exactly its declared ``warmup`` candles
(what the engine gives it) and once from a history four times as long, flat and with an open position: the
decisions must be equal. An indicator that needs more history than declared (an exponential average seeded at the
start of the data, a longer window than ``warmup``) makes them differ, and the first such candle is reported.

What it cannot see: a strategy that reads market data on its own (a file, the network) gets the same future
in both runs; keep strategies to the candles they are given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from chalicelib.bot.backtest import run_backtest
from chalicelib.bot.tick import CandleOutcome, describe_fill
from chalicelib.money import quantize_money
from chalicelib.trading.candles import Candle, format_time
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies import Decision, StrategyError, decide_safely, get_strategy, strategy_entry

HISTORY_FACTOR = 4


@dataclass(frozen=True)
class Finding:
    """Where a check failed: the candle and what differed."""

    check: str
    candle: str
    detail: str

    def line(self) -> str:
        return f"{self.check}: FAILED at candle {self.candle}: {self.detail}"


@dataclass(frozen=True)
class CheckReport:
    strategy: str
    candles: int
    cut_points: int
    warmup_samples: int
    findings: tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        return not self.findings


def _describe(o: CandleOutcome) -> str:
    fills = "; ".join(describe_fill(f) for f in o.fills) or "no fill"
    return f"{o.decision} ({fills}), equity {o.equity}"


def look_ahead(strategy: str, params: dict[str, Any], candles: Sequence[Candle], first: int, *, symbol: str,
               timeframe: str, cuts: int, progress: Callable[[str], None] | None = None) -> tuple[int, Finding | None]:
    """Compare the full run with runs cut at ``cuts`` points after ``first`` (the first tested index)."""
    capital = Decimal(10_000)

    def run(upto: int) -> tuple[CandleOutcome, ...]:
        feed = ReplayFeed.from_candles(candles[:upto], symbol=symbol, timeframe=timeframe, label="check")
        return run_backtest(strategy, symbol, timeframe, start=candles[first].open_time, initial_balance=capital,
                            feed=feed, params=params).outcomes

    full = run(len(candles))
    span = len(candles) - 1 - first
    points = sorted({first + max(1, round(span * k / cuts)) for k in range(1, cuts + 1)} - {len(candles)})
    for n, cut in enumerate(points, 1):
        if progress is not None:
            progress(f"look-ahead: cut {n}/{len(points)} at {format_time(candles[cut - 1].open_time)}")
        cut_run = run(cut)
        for with_future, without in zip(full, cut_run, strict=False):
            if with_future != without:
                return len(points), Finding(
                    "look-ahead", format_time(without.candle_time),
                    f"with the later candles: {_describe(with_future)}; without them: {_describe(without)}")
    return len(points), None


def _decide(strategy: Any, window: Sequence[Candle], position: PositionView | None) -> Decision | str:
    try:
        return decide_safely(strategy, window, position)
    except StrategyError as exc:
        return f"error: {exc.problem}"


def warmup_stability(strategy_name: str, params: dict[str, Any], candles: Sequence[Candle], *,
                     samples: int) -> tuple[int, Finding | None]:
    """Decide from ``warmup`` candles and from ``HISTORY_FACTOR`` × as many at sampled candles; compare."""
    strategy = get_strategy(strategy_name, **params)
    warmup = max(1, strategy.warmup)
    longer = warmup * HISTORY_FACTOR
    start = longer - 1
    if len(candles) <= start:
        return 0, None
    indexes = sorted({start + (len(candles) - 1 - start) * k // max(samples - 1, 1) for k in range(samples)})
    for t in indexes:
        close = candles[t].close
        held = PositionView(entry_price=candles[t - 1].close, quantity=Decimal(1),
                            stop_loss=quantize_money(close / 2), take_profit=quantize_money(close * 2),
                            opened_at=candles[t - 1].open_time)
        for position in (None, held):
            short = _decide(strategy, candles[t - warmup + 1 : t + 1], position)
            long = _decide(strategy, candles[t - longer + 1 : t + 1], position)
            if short != long:
                state = "flat" if position is None else "holding"
                return len(indexes), Finding(
                    "warm-up", format_time(candles[t].open_time),
                    f"({state}) from the declared {warmup} candles: {short!r}; from {longer}: {long!r}")
    return len(indexes), None


def check(strategy: str, *, symbol: str, timeframe: str, candles: Sequence[Candle], days: int, cuts: int = 20,
          samples: int = 200, params: dict[str, Any] | None = None,
          progress: Callable[[str], None] | None = None) -> CheckReport:
    """Both checks over the last ``days`` of ``candles`` (with the strategy's warm-up before them)."""
    params = params or {}
    entry = strategy_entry(strategy)
    warmup = max(1, entry.build(**params).warmup)
    step = candles[1].open_time - candles[0].open_time if len(candles) > 1 else timedelta(hours=1)
    wanted = int(timedelta(days=days) / step)
    first_tested = max(warmup, len(candles) - wanted)
    window = candles[first_tested - warmup :]
    first = warmup
    findings = []
    cut_count, found = look_ahead(strategy, params, window, first, symbol=symbol, timeframe=timeframe, cuts=cuts,
                                  progress=progress)
    if found is not None:
        findings.append(found)
    if progress is not None:
        progress("warm-up stability")
    sampled, found = warmup_stability(strategy, params, candles[max(0, first_tested - warmup * HISTORY_FACTOR):],
                                      samples=samples)
    if found is not None:
        findings.append(found)
    return CheckReport(strategy, len(window) - first, cut_count, sampled, tuple(findings))
