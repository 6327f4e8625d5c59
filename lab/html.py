"""The backtest report as one self-contained HTML file: inline SVG charts and inline CSS, no script, no font, no
external asset — it opens offline and prints.

Charts are drawn from at most :data:`MAX_POINTS` points per line: each of a long series' buckets keeps its lowest
and its highest value, in time order, so a downsampled line still shows every peak and every trough.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape

from chalicelib.accounting import drawdown
from chalicelib.trading.candles import format_time
from lab.report import RunReport, baseline_name, headline_rows

MAX_POINTS = 1200
WIDTH, HEIGHT, PAD = 1000, 260, 62

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px} p.sub{color:#5b6475;margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0} td,th{padding:3px 10px;border-bottom:1px solid #e3e6ec;text-align:right}
th:first-child,td:first-child{text-align:left} thead th{background:#f4f6f9}
svg{display:block;max-width:100%;height:auto;background:#fbfcfd;border:1px solid #e3e6ec}
.pos{color:#137333} .neg{color:#b3261e} .legend span{margin-right:16px} .k{font-size:12px;color:#5b6475}
"""


def _downsample(values: Sequence[float]) -> list[tuple[int, float]]:
    """(index, value) pairs: all of them, or each bucket's minimum and maximum in index order."""
    n = len(values)
    if n <= MAX_POINTS:
        return list(enumerate(values))
    buckets = MAX_POINTS // 2
    out: list[tuple[int, float]] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        chunk = range(lo, hi)
        i_min = min(chunk, key=values.__getitem__)
        i_max = max(chunk, key=values.__getitem__)
        out.extend((i, values[i]) for i in sorted({i_min, i_max}))
    return out


class _Frame:
    """Maps (index, value) to SVG coordinates."""

    def __init__(self, count: int, low: float, high: float) -> None:
        self.count = max(count - 1, 1)
        self.low, self.high = low, high if high > low else low + 1

    def x(self, i: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * i / self.count

    def y(self, v: float) -> float:
        return HEIGHT - PAD + (PAD * 2 - HEIGHT) * (v - self.low) / (self.high - self.low)


def _path(frame: _Frame, values: Sequence[float]) -> str:
    points = _downsample(values)
    return "M" + " L".join(f"{frame.x(i):.1f},{frame.y(v):.1f}" for i, v in points)


def _axes(frame: _Frame, times: Sequence[datetime], fmt: str) -> str:
    parts = []
    for k in range(5):
        v = frame.low + (frame.high - frame.low) * k / 4
        y = frame.y(v)
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ec"/>'
                     f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6475">'
                     f"{fmt.format(v)}</text>")
    for k in range(5):
        i = round((len(times) - 1) * k / 4)
        parts.append(f'<text x="{frame.x(i):.1f}" y="{HEIGHT - PAD + 18}" text-anchor="middle" font-size="11" '
                     f'fill="#5b6475">{times[i]:%Y-%m-%d}</text>')
    return "".join(parts)


def _svg(chart_id: str, title: str, body: str) -> str:
    return (f'<svg id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>')


def equity_chart(r: RunReport) -> str:
    strat = [float(e) for e in r.equity]
    hold = [float(e) for e in r.hold_equity]
    frame = _Frame(len(strat), min(*strat, *hold), max(*strat, *hold))
    body = (_axes(frame, r.times, "${:,.0f}")
            + f'<path class="line hold" d="{_path(frame, hold)}" fill="none" stroke="#9aa3b2" stroke-width="1.2"/>'
            + f'<path class="line equity" d="{_path(frame, strat)}" fill="none" stroke="#1a5fd0" stroke-width="1.6"/>')
    return _svg("equity-chart", "Equity curve", body)


def drawdown_chart(r: RunReport) -> str:
    peak = r.equity[0]
    dds = []
    for e in r.equity:  # the same drawdown as the statistics (chalicelib.accounting), drawn as a float
        peak = max(peak, e)
        dds.append(-float(drawdown(e, peak)) * 100)
    frame = _Frame(len(dds), min(*dds, -1.0), 0.0)
    line = _path(frame, dds)
    area = f"{line} L{frame.x(len(dds) - 1):.1f},{frame.y(0):.1f} L{frame.x(0):.1f},{frame.y(0):.1f} Z"
    body = (_axes(frame, r.times, "{:.1f}%")
            + f'<path class="line drawdown" d="{area}" fill="#f3c7c3" stroke="#b3261e" stroke-width="1"/>')
    return _svg("drawdown-chart", "Drawdown", body)


def price_chart(r: RunReport) -> str:
    """The first pair's closes with its trades (a several-pair run's other pairs are in its tables)."""
    symbol = r.run.symbols[0]
    outcomes = [o for o in r.run.outcomes if o.symbol == symbol]
    closes = [float(r.run.start_close), *(float(o.close) for o in outcomes)]
    frame = _Frame(len(closes), min(closes), max(closes))
    index = {o.candle_time: i + 1 for i, o in enumerate(outcomes)}
    marks = []
    for t in r.run.trade_records:
        if t.symbol != symbol:
            continue
        for when, price, colour, shape in ((t.entry_time, t.entry_price, "#137333", "entry"),
                                           (t.exit_time, t.exit_price, "#b3261e", "exit")):
            i = index.get(when)
            if i is None:
                continue
            x, y = frame.x(i), frame.y(float(price))
            tip = f"{shape} {format_time(when)} at {price}" + (f" ({t.exit_reason})" if shape == "exit" else "")
            if shape == "entry":
                marks.append(f'<path class="mark entry" d="M{x:.1f},{y + 2:.1f} l-4,7 h8 Z" fill="{colour}">'
                             f"<title>{escape(tip)}</title></path>")
            else:
                marks.append(f'<path class="mark exit" d="M{x:.1f},{y - 2:.1f} l-4,-7 h8 Z" fill="{colour}">'
                             f"<title>{escape(tip)}</title></path>")
    body = (_axes(frame, r.times, "{:,.0f}")
            + f'<path class="line price" d="{_path(frame, closes)}" fill="none" stroke="#5b6475" stroke-width="1"/>'
            + "".join(marks))
    return _svg("price-chart", "Trades on the price chart", body)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _signed(value: Decimal, suffix: str = "%") -> str:
    cls = "pos" if value > 0 else "neg" if value < 0 else ""
    return f'<span class="{cls}">{value:+.2f}{suffix}</span>'


def render(r: RunReport) -> str:
    run = r.run
    params = ", ".join(f"{k}={v}" for k, v in run.params.items()) or "defaults"
    headline = _table(
        ["", escape(run.strategy), baseline_name(run)],
        [(escape(a), escape(b), escape(c)) for (a, b), (_, c) in zip(headline_rows(r.strategy),
                                                                       headline_rows(r.hold), strict=True)],
        "headline")
    dd = r.strategy.max_drawdown
    dd_text = ("never below its peak" if dd.peak is None else
               f"{dd.depth * 100:.2f}% from {format_time(dd.peak)} to the trough at {format_time(dd.trough)}"
               if dd.trough else "")
    if dd.peak is not None:
        dd_text += (f", recovered {format_time(dd.recovery)}" if dd.recovery else ", not recovered by the end")
        dd_text += f" ({dd.duration.total_seconds() / 86400:.1f} days)"
    reasons = _table(["exit reason", "trades", "wins", "net"],
                     [(escape(k), str(v["trades"]), str(v["wins"]), f"${v['net']:,.2f}")
                      for k, v in r.strategy.by_exit_reason.items()], "exit-reasons")
    months = _table(["month", escape(run.strategy), baseline_name(run)],
                    [(k, _signed(v * 100), _signed(r.hold.monthly_returns.get(k, Decimal(0)) * 100))
                     for k, v in r.strategy.monthly_returns.items()], "monthly")
    trades = _table(["entry", "exit", "pair", "entry price", "exit price", "quantity", "net", "exit reason"],
                    [(format_time(t.entry_time), format_time(t.exit_time), escape(t.symbol), f"{t.entry_price}",
                      f"{t.exit_price}",
                      f"{t.quantity}", _signed(t.net, ""), escape(t.exit_reason)) for t in run.trade_records],
                    "trades")
    chart_pair = f" ({escape(run.symbols[0])})" if len(run.symbols) > 1 else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>atb backtest: {escape(run.strategy)} on {escape(run.symbol)}</title>
<style>{CSS}</style></head><body>
<h1>{escape(run.strategy)} on {escape(run.symbol)} {escape(run.timeframe)}</h1>
<p class="sub">{run.candles} candles, {format_time(run.first_candle)} → {format_time(run.last_candle)};
parameters: {escape(params)}; initial balance ${run.initial_balance:,.2f}, final equity ${run.final_equity:,.2f};
ledger verified: {"ok" if run.verified else "FAILED"}. Data: {escape(run.data)}.</p>
{headline}
<p class="k">Sharpe and Sortino from per-candle returns, annualised, risk-free rate 0; the ratios are floats,
money is exact. Definitions: docs/lab.md.</p>
<h2>Equity</h2><p class="legend"><span style="color:#1a5fd0">■ {escape(run.strategy)}</span>
<span style="color:#9aa3b2">■ {baseline_name(run)}</span></p>
{equity_chart(r)}
<h2>Drawdown</h2><p class="k">Deepest: {escape(dd_text)}.</p>
{drawdown_chart(r)}
<h2>Trades on the price chart{chart_pair}</h2><p class="legend"><span style="color:#137333">▲ entry</span>
<span style="color:#b3261e">▼ exit</span></p>
{price_chart(r)}
<h2>Trades by exit reason</h2>{reasons}
<h2>Monthly returns</h2>{months}
<h2>Trades ({len(run.trade_records)})</h2>{trades}
</body></html>
"""
