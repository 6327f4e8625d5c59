"""The backtest report opens offline in headless Chromium with its charts drawn: the equity curve beside buy and
hold, the drawdown, every trade on the price chart, and the tables — from one file with no external asset."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.bot.backtest import run_backtest
from lab.html import MAX_POINTS
from lab.report import analyse, write_run

pytestmark = pytest.mark.browser
def test_the_html_report_draws_its_charts_and_tables_offline(browser: Any, tmp_path: Path) -> None:
    summary = run_backtest("ma_crossover", days=60, initial_balance=Decimal(1000))
    assert summary.trades > 0
    write_run(analyse(summary), tmp_path)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((tmp_path / "report.html").as_uri())
    page.wait_for_load_state("load")
    assert requests == [(tmp_path / "report.html").as_uri()]  # nothing else fetched: self-contained

    for chart in ("equity-chart", "drawdown-chart", "price-chart"):
        box = page.locator(f"#{chart}").bounding_box()
        assert box is not None and box["width"] > 900 and box["height"] > 200, chart
    # Lines drawn across the chart's width, each from many points (a long series keeps each bucket's low and high).
    for line in ("equity", "hold", "drawdown", "price"):
        box = page.locator(f"path.line.{line}").bounding_box()
        assert box is not None and box["width"] > 800 and box["height"] > 10, line
        points = page.locator(f"path.line.{line}").get_attribute("d").count("L") + 1
        assert 500 <= points <= MAX_POINTS + 2, (line, points)
    # Every trade appears on the price chart: one entry and one exit mark each, drawn.
    assert page.locator("#price-chart path.mark.entry").count() == summary.trades
    assert page.locator("#price-chart path.mark.exit").count() == summary.trades
    mark = page.locator("#price-chart path.mark.entry").first.bounding_box()
    assert mark is not None and mark["width"] > 3
    # The tables: headline with buy and hold beside, one row per trade.
    assert page.locator("#headline thead th").all_inner_texts() == ["", "ma_crossover", "buy and hold"]
    assert page.locator("#trades tbody tr").count() == summary.trades
    assert page.locator("#monthly tbody tr").count() >= 2
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
