"""Backtest statistics, each defined in docs/lab.md with its formula.

Money (returns on the account, fees, P&L, expectancy, average win and loss) stays exact ``Decimal``. The ratios
built on the spread of returns (Sharpe, Sortino, SQN, CAGR, Calmar) are floats — statistics, not money — and are
reported to 2-4 decimals. The maximum drawdown is :func:`chalicelib.accounting.max_drawdown`, the one place it
is measured.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.accounting import max_drawdown
from chalicelib.money import ZERO

#: Seconds in the average (Julian) year: 365.25 days. Annualising factors use it.
YEAR_SECONDS = 365.25 * 86_400


@dataclass(frozen=True)
class TradeResult:
    """What the statistics need from one closed trade."""

    exit_time: datetime
    net: Decimal  # realised P&L after fees
    exit_reason: str


@dataclass(frozen=True)
class DrawdownInfo:
    depth: Decimal  # fraction
    peak: datetime | None
    trough: datetime | None
    recovery: datetime | None  # None: not recovered by the end
    duration: timedelta  # peak → recovery (or → the end, while under water)


@dataclass(frozen=True)
class Metrics:
    """The statistics of one equity series (and its trades, when it has any)."""

    start_equity: Decimal
    end_equity: Decimal
    total_return: Decimal  # fraction
    cagr: float | None  # fraction per year
    max_drawdown: DrawdownInfo
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    exposure: float | None  # fraction of candles with a position open at the close
    fees: Decimal
    trades: int | None
    win_rate: float | None
    profit_factor: float | None
    expectancy: Decimal | None
    average_win: Decimal | None
    average_loss: Decimal | None
    sqn: float | None
    by_exit_reason: dict[str, dict[str, Any]] = field(default_factory=dict)
    monthly_returns: dict[str, Decimal] = field(default_factory=dict)


def period_returns(equity: Sequence[Decimal]) -> list[float]:
    """r_i = E_i / E_{i−1} − 1 for each candle (floats); a period starting at zero equity is left out."""
    return [float(b / a - 1) for a, b in itertools.pairwise(equity) if a > 0]


def sharpe_ratio(returns: Sequence[float], periods_per_year: float) -> float | None:
    """mean(r) / stdev(r) × √periods_per_year, sample standard deviation, risk-free rate 0."""
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(periods_per_year)


def sortino_ratio(returns: Sequence[float], periods_per_year: float) -> float | None:
    """mean(r) / downside deviation × √periods_per_year; downside deviation = √(Σ min(r, 0)² / n), target 0."""
    if not returns:
        return None
    mean = sum(returns) / len(returns)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    if downside == 0:
        return None
    return mean / downside * math.sqrt(periods_per_year)


def cagr(start: Decimal, end: Decimal, seconds: float) -> float | None:
    """(E_end / E_start)^(1 / years) − 1 with years = seconds / 365.25 days."""
    if start <= 0 or seconds <= 0:
        return None
    if end <= 0:
        return -1.0
    growth: float = float(end / start) ** (YEAR_SECONDS / seconds)
    return growth - 1


def drawdown_info(times: Sequence[datetime], equity: Sequence[Decimal]) -> DrawdownInfo:
    """The deepest drawdown of ``equity`` (``times[i]`` is when ``equity[i]`` was marked)."""
    deepest = max_drawdown(equity)
    if deepest.depth == 0 or not times:
        return DrawdownInfo(ZERO, None, None, None, timedelta(0))
    peak, trough = times[deepest.peak], times[deepest.trough]
    recovery = times[deepest.recovery] if deepest.recovery is not None else None
    return DrawdownInfo(deepest.depth, peak, trough, recovery, (recovery or times[-1]) - peak)


def monthly_returns(times: Sequence[datetime], equity: Sequence[Decimal], period: timedelta) -> dict[str, Decimal]:
    """For each calendar month (UTC) ``YYYY-MM`` of the candles' open times: the equity at the close of its last
    candle / the same at the end of the previous month − 1 (the first month measured from ``equity[0]``).
    ``times[i]`` is when ``equity[i]`` was marked, the close of a candle opened at ``times[i] − period``."""
    month_end: dict[str, Decimal] = {}
    for t, e in zip(times[1:], equity[1:], strict=True):
        month_end[(t - period).strftime("%Y-%m")] = e
    out: dict[str, Decimal] = {}
    before = equity[0] if equity else ZERO
    for month, end in month_end.items():
        out[month] = end / before - 1 if before > 0 else ZERO
        before = end
    return out


def trade_statistics(trades: Sequence[TradeResult]) -> dict[str, Any]:
    """Win rate, profit factor, expectancy, average win and loss, SQN and the table by exit reason."""
    nets = [t.net for t in trades]
    wins = [n for n in nets if n > 0]
    losses = [n for n in nets if n <= 0]
    gross_win, gross_loss = sum(wins, ZERO), -sum(losses, ZERO)
    sqn = None
    if len(nets) >= 2:
        mean = sum(float(n) for n in nets) / len(nets)
        sd = math.sqrt(sum((float(n) - mean) ** 2 for n in nets) / (len(nets) - 1))
        sqn = math.sqrt(len(nets)) * mean / sd if sd > 0 else None
    by_reason: dict[str, dict[str, Any]] = defaultdict(lambda: {"trades": 0, "wins": 0, "net": ZERO})
    for t in trades:
        row = by_reason[t.exit_reason]
        row["trades"] += 1
        row["wins"] += t.net > 0
        row["net"] += t.net
    return {
        "trades": len(nets),
        "win_rate": len(wins) / len(nets) if nets else None,
        "profit_factor": float(gross_win / gross_loss) if gross_loss > 0 else None,
        "expectancy": sum(nets, ZERO) / len(nets) if nets else None,
        "average_win": gross_win / len(wins) if wins else None,
        "average_loss": -gross_loss / len(losses) if losses else None,
        "sqn": sqn,
        "by_exit_reason": dict(sorted(by_reason.items())),
    }


def compute(
    times: Sequence[datetime],
    equity: Sequence[Decimal],
    *,
    period_seconds: float,
    trades: Sequence[TradeResult] | None = None,
    exposed: Sequence[bool] | None = None,
    fees: Decimal = ZERO,
) -> Metrics:
    """Every statistic of the series ``equity[0..n]`` marked at ``times[0..n]`` (``equity[0]`` is the capital at
    the start, before the first candle). ``trades`` None (buy and hold) leaves the trade statistics empty."""
    if len(times) != len(equity) or not equity:
        raise ValueError("times and equity must be non-empty and of the same length")
    start, end = equity[0], equity[-1]
    seconds = (times[-1] - times[0]).total_seconds()
    per_year = YEAR_SECONDS / period_seconds
    rets = period_returns(equity)
    dd = drawdown_info(times, equity)
    growth = cagr(start, end, seconds)
    stats = trade_statistics(trades) if trades is not None else {}
    calmar = growth / float(dd.depth) if growth is not None and dd.depth > 0 else None
    return Metrics(
        start_equity=start, end_equity=end, total_return=end / start - 1 if start > 0 else ZERO, cagr=growth,
        max_drawdown=dd, sharpe=sharpe_ratio(rets, per_year), sortino=sortino_ratio(rets, per_year), calmar=calmar,
        exposure=(sum(exposed) / len(exposed) if exposed else None), fees=fees,
        trades=stats.get("trades"), win_rate=stats.get("win_rate"), profit_factor=stats.get("profit_factor"),
        expectancy=stats.get("expectancy"), average_win=stats.get("average_win"),
        average_loss=stats.get("average_loss"), sqn=stats.get("sqn"), by_exit_reason=stats.get("by_exit_reason", {}),
        monthly_returns=monthly_returns(times, equity, timedelta(seconds=period_seconds)),
    )
