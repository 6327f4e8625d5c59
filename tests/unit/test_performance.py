"""Performance attribution worked out by hand (``chalicelib.performance``: the pure aggregation and its input).

Five trades, an account whose equity was 1,000, 1,100 and 1,200 at the window's three candle closes (Ē = 1,100):

| trade | strategy (version) | symbol  | gross | fees | net  |
|-------|--------------------|---------|-------|------|------|
| A     | ma_crossover (v1)  | BTCUSDT | 30    | 2    | 28   |
| B     | ma_crossover (v2)  | ETHUSDT | −10   | 2    | −12  |
| C     | ml_basic (m1)      | BTCUSDT | 5     | 1    | 4    |
| D     | ml_basic (m1)      | ETHUSDT | 1     | 1    | 0    |  (net 0 is a loss: wins are net > 0)
| E     | — (unrecorded)     | BTCUSDT | −3    | 0.5  | −3.5 |
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from chalicelib.performance import (
    GroupFigures,
    ReportError,
    TradeLine,
    attribute,
    average_equity,
    fraction,
    parse_by,
    window,
)

A = TradeLine("ma_crossover", "v1", "BTCUSDT", D("30"), D("2"))
B = TradeLine("ma_crossover", "v2", "ETHUSDT", D("-10"), D("2"))
C = TradeLine("ml_basic", "m1", "BTCUSDT", D("5"), D("1"))
D_ = TradeLine("ml_basic", "m1", "ETHUSDT", D("1"), D("1"))
E = TradeLine(None, None, "BTCUSDT", D("-3"), D("0.5"))
TRADES = [A, B, C, D_, E]
EQUITY = average_equity([D("1000"), D("1100"), D("1200")])


def test_the_average_equity_is_the_mean_of_the_candle_closes_rounded_half_even_to_the_money_scale() -> None:
    assert average_equity([D("1000"), D("1100"), D("1200")]) == D("1100")
    assert average_equity([D("1"), D("1"), D("2")]) == D("1.33333333")
    assert average_equity([D("0.00000001"), D("0.00000002")]) == D("0.00000002")  # 0.000000015, half-even up
    assert average_equity([D("0.00000003"), D("0.00000002")]) == D("0.00000002")  # 0.000000025, half-even down
    assert average_equity([]) is None


def test_by_strategy_each_trade_counts_for_the_strategy_that_opened_it() -> None:
    groups, total = attribute(TRADES, "strategy", EQUITY)
    assert groups == (
        GroupFigures(key="ma_crossover", versions=("v1", "v2"), trades=2, wins=1, losses=1, win_rate=D("0.5"),
                     realized_pnl=D("20"), fees=D("4"), net_pnl=D("16"), average_win=D("28"), average_loss=D("-12"),
                     contribution=D("0.014545454545454545")),  # 16 / 1100 = 0.0145454545…
        GroupFigures(key="ml_basic", versions=("m1",), trades=2, wins=1, losses=1, win_rate=D("0.5"),
                     realized_pnl=D("6"), fees=D("2"), net_pnl=D("4"), average_win=D("4"), average_loss=D("0"),
                     contribution=D("0.003636363636363636")),  # 4 / 1100
        GroupFigures(key="unrecorded", versions=(), trades=1, wins=0, losses=1, win_rate=D("0"),
                     realized_pnl=D("-3"), fees=D("0.5"), net_pnl=D("-3.5"), average_win=None,
                     average_loss=D("-3.5"), contribution=D("-0.003181818181818182")),  # −3.5 / 1100, …1818|18 up
    )
    assert total == GroupFigures(
        key="total", versions=None, trades=5, wins=2, losses=3, win_rate=D("0.4"), realized_pnl=D("23"),
        fees=D("6.5"), net_pnl=D("16.5"), average_win=D("16"), average_loss=D("-5.16666667"),  # −15.5 / 3
        contribution=D("0.015"))
    # the groups' contributions add up to the total's, up to the rounding of each at the 18th place
    assert abs(sum(g.contribution for g in groups if g.contribution is not None) - total.contribution) <= D("3e-18")


def test_by_symbol_the_same_trades_split_by_pair_and_the_total_is_unchanged() -> None:
    groups, total = attribute(TRADES, "symbol", EQUITY)
    btc, eth = groups
    assert btc == GroupFigures(key="BTCUSDT", versions=None, trades=3, wins=2, losses=1,
                               win_rate=D("0.666666666666666667"), realized_pnl=D("32"), fees=D("3.5"),
                               net_pnl=D("28.5"), average_win=D("16"), average_loss=D("-3.5"),
                               contribution=D("0.025909090909090909"))  # 28.5 / 1100
    assert eth == GroupFigures(key="ETHUSDT", versions=None, trades=2, wins=0, losses=2, win_rate=D("0"),
                               realized_pnl=D("-9"), fees=D("3"), net_pnl=D("-12"), average_win=None,
                               average_loss=D("-6"), contribution=D("-0.010909090909090909"))  # −12 / 1100
    assert total == attribute(TRADES, "strategy", EQUITY)[1]


def test_without_trades_or_without_equity_the_figures_say_so_with_nulls_not_zeros() -> None:
    groups, total = attribute([], "strategy", EQUITY)
    assert groups == ()
    assert (total.trades, total.win_rate, total.average_win, total.average_loss, total.net_pnl,
            total.contribution) == (0, None, None, None, D("0"), D("0"))
    _, no_equity = attribute([A], "symbol", None)
    assert no_equity.contribution is None and no_equity.net_pnl == D("28")
    assert attribute([A], "symbol", D("0"))[1].contribution is None  # an emptied account: no denominator
    assert fraction(D("1"), D("3")) == D("0.333333333333333333")
    assert fraction(D("2"), D("3")) == D("0.666666666666666667")


def test_the_window_takes_iso_dates_and_times_in_utc_and_refuses_anything_else() -> None:
    assert window(None, None) == (None, None)
    assert window("2024-01-31", None) == (datetime(2024, 1, 31, tzinfo=UTC), None)
    assert window("2024-01-31T12:00:00+02:00", "2024-02-01T00:00:00Z") == (
        datetime(2024, 1, 31, 10, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
    assert window(None, "2024-01-31T05:30") == (None, datetime(2024, 1, 31, 5, 30, tzinfo=UTC))  # naive: UTC
    for start, end, field in [("", None, "from"), ("yesterday", None, "from"), ("2024-13-01", None, "from"),
                              (None, "2024-01-32", "to"), ("0001-01-01T00:00:00+01:00", None, "from"),
                              ("2024-02-01", "2024-02-01", "to"), ("2024-02-02", "2024-02-01T23:59:59Z", "to")]:
        with pytest.raises(ReportError) as caught:
            window(start, end)
        assert caught.value.field == field, (start, end)


def test_grouping_is_by_strategy_unless_symbol_is_asked_and_nothing_else_is_accepted() -> None:
    assert parse_by(None) == "strategy"
    assert parse_by("symbol") == "symbol"
    for bad in ("", "Strategy", "asset", "symbol "):
        with pytest.raises(ReportError, match="by must be one of strategy, symbol"):
            parse_by(bad)


def test_a_trade_netting_fifty_cents_is_a_win_not_a_loss() -> None:
    small = TradeLine("ma_crossover", "v1", "BTCUSDT", D("1"), D("0.5"))  # 1 gross − 0.50 fees = +0.50 net
    _, total = attribute([small], "strategy", None)
    assert (total.trades, total.wins, total.losses, total.win_rate, total.average_win, total.average_loss) == (
        1, 1, 0, D("1"), D("0.5"), None)


def test_a_refused_value_is_echoed_cut_to_40_characters() -> None:
    long = "a" * 41
    with pytest.raises(ReportError) as by:
        parse_by(long)
    assert str(by.value) == f"by must be one of strategy, symbol (got '{'a' * 40}')"
    with pytest.raises(ReportError) as start:
        window(long, None)
    assert str(start.value) == ("from must be an ISO date or date and time, e.g. 2024-01-31 or 2024-01-31T12:00:00Z "
                                f"(got '{'a' * 40}')")


@pytest.fixture
def local_time_in_india(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC+05:30 (a POSIX TZ string: no zone database needed)."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_window_is_read_in_utc_whatever_the_machines_local_time_zone(local_time_in_india: None) -> None:
    assert time.localtime(0).tm_hour == 5  # the epoch, 00:00 UTC, is 05:30 here
    since, until = window("2024-01-31T12:00:00+02:00", "2024-02-01T05:30")  # an offset; a naive time is UTC
    assert (since.isoformat(), until.isoformat()) == ("2024-01-31T10:00:00+00:00", "2024-02-01T05:30:00+00:00")
    assert window("2024-01-31", None)[0].isoformat() == "2024-01-31T00:00:00+00:00"
