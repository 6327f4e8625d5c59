"""What a backtest leaves behind: the statistics beside buy and hold, and the files of ``--output DIR``.

Per strategy, ``DIR/<strategy>/``: ``trades.csv`` and ``trades.json`` (every closed trade), ``ledger.csv`` (every
ledger row the run booked), ``report.json`` (the statistics, machine-readable) and ``report.html`` (self-contained:
inline SVG and CSS, no script, no external asset — it opens offline). ``DIR/summary.json`` holds the headline of
every strategy run on the same candles.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from chalicelib.bot.backtest import BacktestSummary, PairSummary, spec_step
from chalicelib.bot.tick import CandleOutcome
from chalicelib.jsonutil import dumps
from chalicelib.money import ZERO, quantize_money
from lab import metrics as m


@dataclass(frozen=True)
class RunReport:
    """One strategy's backtest with its statistics and its baseline's (buy and hold, or the equal-weight basket of
    several pairs) over the same candles."""

    run: BacktestSummary
    times: tuple[datetime, ...]  # when each equity value was marked (candle closes; the first is the start)
    equity: tuple[Decimal, ...]
    hold_equity: tuple[Decimal, ...]
    strategy: m.Metrics
    hold: m.Metrics


def analyse(run: BacktestSummary) -> RunReport:
    """The statistics of a finished backtest and of its baseline over the same candles: buying and holding the pair,
    or, with several pairs, the equal-weight basket (``chalicelib.bot.backtest.Basket``). One value per candle time:
    the wallet after every pair's candle of that time."""
    step = timedelta(seconds=spec_step(run.timeframe))
    last_of: dict[datetime, CandleOutcome] = {}
    exposed_at: dict[datetime, bool] = {}
    holding = 0
    for o in run.outcomes:
        holding += o.opened - o.closed
        last_of[o.candle_time] = o
        exposed_at[o.candle_time] = holding > 0
    marks = list(last_of.values())
    start_time = marks[0].candle_time if marks else run.first_candle
    times = (start_time, *(o.candle_time + step for o in marks))
    equity = (run.initial_balance, *(o.equity for o in marks))
    if run.basket is not None:
        hold = (run.initial_balance, *run.basket.values[:len(marks)])
        hold_fees = run.basket.fees
    else:
        base = marks[0].close if marks else run.start_close  # bought at the first close the strategy could
        hold = (run.initial_balance, *(quantize_money(run.initial_balance * o.close / base) if base > 0
                                       else run.initial_balance for o in marks))
        hold_fees = ZERO
    trades = [m.TradeResult(t.exit_time, t.net, t.exit_reason) for t in run.trade_records]
    seconds = step.total_seconds()
    return RunReport(
        run=run, times=times, equity=equity, hold_equity=hold,
        strategy=m.compute(times, equity, period_seconds=seconds, trades=trades,
                           exposed=[exposed_at[o.candle_time] for o in marks], fees=run.fees),
        hold=m.compute(times, hold, period_seconds=seconds, exposed=[True] * len(marks), fees=hold_fees),
    )


def baseline_name(run: BacktestSummary) -> str:
    """What the strategy is compared with: buy and hold of its pair, or of an equal-weight basket of its pairs."""
    return "equal-weight basket" if run.basket is not None else "buy and hold"


# ------------------------------------------------------------------------------------------------ plain values


def stat(value: float | None, places: int = 4) -> Decimal | None:
    """A float statistic as a Decimal rounded to ``places`` (JSON never carries binary floats here)."""
    if value is None:
        return None
    return Decimal(f"{value:.{places}f}")


def metrics_dict(x: m.Metrics) -> dict[str, Any]:
    dd = x.max_drawdown
    return {
        "start_equity": x.start_equity, "end_equity": x.end_equity,
        "total_return_pct": quantize_money(x.total_return * 100),
        "cagr_pct": stat(x.cagr * 100 if x.cagr is not None else None, 2),
        "max_drawdown": {"pct": quantize_money(dd.depth * 100), "peak": dd.peak, "trough": dd.trough,
                         "recovery": dd.recovery, "duration_hours": stat(dd.duration.total_seconds() / 3600, 0)},
        "sharpe": stat(x.sharpe), "sortino": stat(x.sortino), "calmar": stat(x.calmar),
        "exposure_pct": stat(x.exposure * 100 if x.exposure is not None else None, 2),
        "fees": x.fees, "trades": x.trades,
        "win_rate_pct": stat(x.win_rate * 100 if x.win_rate is not None else None, 2),
        "profit_factor": stat(x.profit_factor), "expectancy": _money(x.expectancy),
        "average_win": _money(x.average_win), "average_loss": _money(x.average_loss), "sqn": stat(x.sqn),
        "by_exit_reason": {k: {**v, "net": quantize_money(v["net"])} for k, v in x.by_exit_reason.items()},
        "monthly_returns_pct": {k: quantize_money(v * 100) for k, v in x.monthly_returns.items()},
    }


def _money(value: Decimal | None) -> Decimal | None:
    return quantize_money(value) if value is not None else None


def report_dict(r: RunReport) -> dict[str, Any]:
    run = r.run
    return {
        "strategy": run.strategy, "parameters": {k: str(v) for k, v in run.params.items()},
        "symbol": run.symbol, "timeframe": run.timeframe, "data": run.data,
        "first_candle": run.first_candle, "last_candle": run.last_candle, "candles": run.candles,
        "initial_balance": run.initial_balance, "final_balance": run.final_balance, "final_equity": run.final_equity,
        "ledger_verified": run.verified,
        "statistics": {"floats": "Sharpe, Sortino, Calmar, SQN, CAGR, exposure and win rate are computed in binary "
                                 "floating point and rounded; money is exact",
                       "annualisation": f"{m.YEAR_SECONDS / spec_step(run.timeframe):.0f} periods per year, "
                                        "risk-free rate 0"},
        "strategy_metrics": metrics_dict(r.strategy),
        "buy_and_hold_metrics": metrics_dict(r.hold),
        "baseline": baseline_name(run),
        **({"by_symbol": {p.symbol: pair_dict(p) for p in run.pairs}} if run.pairs else {}),
    }


def pair_dict(p: PairSummary) -> dict[str, Any]:
    return {"trades": p.trades, "winning_trades": p.winning_trades, "win_rate_pct": p.win_rate_pct,
            "realized_pnl": p.realized_pnl, "fees": p.fees, "net": p.net, "buy_and_hold_pct": p.buy_and_hold_pct}


# ------------------------------------------------------------------------------------------------ the files


def _csv(rows: Sequence[Any], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return "" if value is None else str(value)


def write_run(r: RunReport, directory: Path) -> list[Path]:
    """The five files of one run into ``directory`` (created); their paths."""
    from lab.html import render

    directory.mkdir(parents=True, exist_ok=True)
    run = r.run
    trade_columns = [f.name for f in fields(run.trade_records[0])] if run.trade_records else [
        "entry_time", "exit_time", "side", "entry_price", "exit_price", "quantity", "realized_pnl", "fees",
        "exit_reason"]
    files = {
        "trades.csv": _csv(run.trade_records, [*trade_columns]),
        "trades.json": dumps([{**asdict(t), "net": t.net} for t in run.trade_records], indent=1),
        "ledger.csv": _csv(run.ledger, [f.name for f in fields(run.ledger[0])] if run.ledger else ["id"]),
        "report.json": dumps(report_dict(r), indent=2),
        "report.html": render(r),
    }
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def write_summary(reports: Sequence[RunReport], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "summary.json"
    first = reports[0]
    path.write_text(dumps({
        "symbol": first.run.symbol, "timeframe": first.run.timeframe, "first_candle": first.run.first_candle,
        "last_candle": first.run.last_candle, "candles": first.run.candles,
        "buy_and_hold": metrics_dict(first.hold), "baseline": baseline_name(first.run),
        "strategies": {r.run.strategy: metrics_dict(r.strategy) for r in reports},
    }, indent=2), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ the terminal


def _pct(value: Decimal | float | None, places: int = 2) -> str:
    return "—" if value is None else f"{value:+.{places}f}%"


def _num(value: float | None, places: int = 2) -> str:
    return "—" if value is None else f"{value:.{places}f}"


def _usd(value: Decimal) -> str:
    from chalicelib.money import format_usd

    return format_usd(value)


def headline_rows(x: m.Metrics) -> list[tuple[str, str]]:
    """The headline statistics of one column, as text."""
    dd = x.max_drawdown
    return [
        ("total return", _pct(x.total_return * 100)),
        ("CAGR", _pct(x.cagr * 100 if x.cagr is not None else None)),
        ("max drawdown", f"{dd.depth * 100:.2f}%"),
        ("drawdown length", f"{dd.duration.total_seconds() / 86400:.1f} d" + ("" if dd.recovery or not dd.peak
                                                                              else " (open)")),
        ("Sharpe", _num(x.sharpe)), ("Sortino", _num(x.sortino)), ("Calmar", _num(x.calmar)),
        ("trades", "—" if x.trades is None else str(x.trades)),
        ("win rate", "—" if x.win_rate is None else f"{x.win_rate * 100:.1f}%"),
        ("profit factor", _num(x.profit_factor)),
        ("expectancy", "—" if x.expectancy is None else _usd(x.expectancy)),
        ("SQN", _num(x.sqn)),
        ("exposure", "—" if x.exposure is None else f"{x.exposure * 100:.1f}%"),
        ("fees", _usd(x.fees)),
    ]


def headline_table(reports: Sequence[RunReport]) -> str:
    """Strategies side by side with buy and hold always in the last column."""
    columns = [(r.run.strategy, headline_rows(r.strategy)) for r in reports]
    columns.append((baseline_name(reports[0].run), headline_rows(reports[0].hold)))
    labels = [label for label, _ in columns[0][1]]
    width0 = max(len(s) for s in labels)
    widths = [max(len(title), *(len(v) for _, v in rows)) for title, rows in columns]
    lines = [" " * width0 + "  " + "  ".join(t.rjust(w) for (t, _), w in zip(columns, widths, strict=True))]
    for i, label in enumerate(labels):
        lines.append(label.ljust(width0) + "  " + "  ".join(
            rows[i][1].rjust(w) for (_, rows), w in zip(columns, widths, strict=True)))
    return "\n".join(lines)
