"""Each backtest statistic against an equity series and trades worked out by hand (docs/lab.md has the formulas)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib.accounting import max_drawdown
from lab import metrics as m

D = Decimal
DAY = 86_400
T0 = datetime(2024, 1, 29, tzinfo=UTC)
TIMES = [T0 + timedelta(days=i) for i in range(6)]  # 29, 30, 31 January, 1, 2, 3 February
# Daily returns +10 %, −10 %, 0, +10 %, +10 %.
EQUITY = [D("100"), D("110"), D("99"), D("99"), D("108.9"), D("119.79")]
TRADES = [
    m.TradeResult(TIMES[1], D("10"), "take_profit"),
    m.TradeResult(TIMES[2], D("-5"), "stop_loss"),
    m.TradeResult(TIMES[4], D("20"), "take_profit"),
    m.TradeResult(TIMES[5], D("-5"), "stop_loss"),
    m.TradeResult(TIMES[5], D("0"), "strategy_exit"),
]


@pytest.fixture(scope="module")
def metrics() -> m.Metrics:
    return m.compute(TIMES, EQUITY, period_seconds=DAY, trades=TRADES, exposed=[True, True, False, False, True],
                     fees=D("1.25"))


def test_total_return_and_cagr(metrics: m.Metrics) -> None:
    assert metrics.total_return == D("0.1979")  # 119.79 / 100 − 1, exact
    # (1.1979)^(365.25 / 5) − 1: five days compounded over a year of 365.25 days
    assert metrics.cagr == pytest.approx(535_329.844, rel=1e-6)


def test_max_drawdown_with_its_peak_trough_recovery_and_duration(metrics: m.Metrics) -> None:
    dd = metrics.max_drawdown
    assert dd.depth == D("0.1")  # 110 → 99; the later 99 ties and does not move the trough
    assert (dd.peak, dd.trough, dd.recovery) == (TIMES[1], TIMES[2], TIMES[5])  # 108.9 < 110 is not recovered
    assert dd.duration == timedelta(days=4)


def test_a_drawdown_never_recovered_runs_to_the_end_of_the_series() -> None:
    deepest = max_drawdown([D(100), D(120), D(90), D(100)])
    assert (deepest.depth, deepest.peak, deepest.trough, deepest.recovery) == (D("0.25"), 1, 2, None)
    info = m.drawdown_info(TIMES[:4], [D(100), D(120), D(90), D(100)])
    assert info.duration == timedelta(days=2) and info.recovery is None


def test_sharpe_and_sortino_annualise_per_period_returns_with_a_zero_risk_free_rate(metrics: m.Metrics) -> None:
    # mean 0.04; sample variance (0.06² + 0.14² + 0.04² + 0.06² + 0.06²) / 4 = 0.008
    # Sharpe = 0.04 / √0.008 × √365.25 = 8.5469
    assert metrics.sharpe == pytest.approx(8.546929, rel=1e-6)
    # downside deviation √(0.1² / 5) = √0.002; Sortino = 0.04 / √0.002 × √365.25 = 17.0939
    assert metrics.sortino == pytest.approx(17.093859, rel=1e-6)


def test_calmar_is_cagr_over_the_max_drawdown(metrics: m.Metrics) -> None:
    assert metrics.calmar == pytest.approx(5_353_298.44, rel=1e-6)


def test_trade_statistics(metrics: m.Metrics) -> None:
    assert metrics.trades == 5
    assert metrics.win_rate == 0.4  # 2 of 5 made money; a zero-profit trade is not a win
    assert metrics.profit_factor == 3.0  # (10 + 20) / (5 + 5)
    assert metrics.expectancy == D("4")  # 20 / 5, exact
    assert metrics.average_win == D("15")
    assert metrics.average_loss == D("-10") / 3
    # SQN = √5 × 4 / sample sd of (10, −5, 20, −5, 0) = √5 × 4 / √117.5
    assert metrics.sqn == pytest.approx(0.825137, rel=1e-6)


def test_trades_by_exit_reason(metrics: m.Metrics) -> None:
    assert metrics.by_exit_reason == {
        "stop_loss": {"trades": 2, "wins": 0, "net": D("-10")},
        "strategy_exit": {"trades": 1, "wins": 0, "net": D("0")},
        "take_profit": {"trades": 2, "wins": 2, "net": D("30")},
    }


def test_exposure_fees_and_monthly_returns(metrics: m.Metrics) -> None:
    assert metrics.exposure == 0.6
    assert metrics.fees == D("1.25")
    # Each mark closes the day before it: the candles of 29, 30 and 31 January end at 99, February's at 119.79.
    assert metrics.monthly_returns == {"2024-01": D("-0.01"), "2024-02": D("0.21")}  # 99/100 − 1, 119.79/99 − 1


def test_a_series_without_trades_has_no_trade_statistics_and_flat_equity_no_ratios() -> None:
    flat = m.compute(TIMES[:3], [D(100)] * 3, period_seconds=DAY)
    assert flat.trades is None and flat.sharpe is None and flat.sortino is None and flat.calmar is None
    assert flat.max_drawdown.depth == 0 and flat.max_drawdown.peak is None
    assert flat.total_return == 0
