"""Candle validation: bad candles are refused with one clear line; gaps are reported, not refused."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib.trading.candles import (
    BadCandleError,
    Candle,
    UnsupportedTimeframeError,
    is_on_grid,
    last_closed_open_time,
    timeframe_to_timedelta,
    validate_candles,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def bar(i: int, o="100", h="110", lo="90", c="105", v="1", *, at: datetime | None = None) -> Candle:
    return Candle(at or T0 + i * HOUR, Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(v))


def test_timeframes_map_to_their_durations_and_unknown_ones_are_refused():
    assert timeframe_to_timedelta("1m") == timedelta(minutes=1)
    assert timeframe_to_timedelta("4h") == timedelta(hours=4)
    assert timeframe_to_timedelta("1d") == timedelta(days=1)
    with pytest.raises(UnsupportedTimeframeError, match="unsupported timeframe '2h'"):
        timeframe_to_timedelta("2h")


def test_last_closed_candle_is_the_one_before_the_candle_now_in_progress():
    # 10:30 -> the 10:00 candle is still open, the 09:00 candle closed at 10:00.
    assert last_closed_open_time(datetime(2024, 1, 1, 10, 30, tzinfo=UTC), "1h") == datetime(
        2024, 1, 1, 9, tzinfo=UTC
    )
    # Exactly on the boundary 10:00 the 09:00 candle has just closed.
    assert last_closed_open_time(datetime(2024, 1, 1, 10, tzinfo=UTC), "1h") == datetime(
        2024, 1, 1, 9, tzinfo=UTC
    )
    # 4h candles start at 00, 04, 08, ... UTC: at 10:30 the 04:00 candle is the last closed one.
    assert last_closed_open_time(datetime(2024, 1, 1, 10, 30, tzinfo=UTC), "4h") == datetime(
        2024, 1, 1, 4, tzinfo=UTC
    )


def test_a_clean_batch_passes_with_no_gaps():
    result = validate_candles([bar(0), bar(1), bar(2)], "1h")
    assert len(result.candles) == 3
    assert result.gaps == ()


def test_missing_candles_are_a_gap_not_an_error():
    # 00:00, 01:00, then 04:00: 02:00 and 03:00 are missing -> one gap of 2.
    result = validate_candles([bar(0), bar(1), bar(4)], "1h")
    assert len(result.candles) == 3
    (gap,) = result.gaps
    assert (gap.after, gap.before, gap.missing) == (T0 + HOUR, T0 + 4 * HOUR, 2)
    assert "2 candle(s) missing" in gap.describe()


def test_a_hole_between_the_cursor_and_the_first_new_candle_is_a_gap():
    result = validate_candles([bar(3)], "1h", after=T0)
    assert result.gaps[0].missing == 2


def test_a_candle_at_or_before_the_cursor_is_refused():
    with pytest.raises(BadCandleError, match="duplicate"):
        validate_candles([bar(0)], "1h", after=T0)


@pytest.mark.parametrize(
    ("candle", "expected"),
    [
        (bar(0, o="0"), "open price must be positive, got 0"),
        (bar(0, lo="-1"), "low price must be positive, got -1"),
        (bar(0, c="NaN"), "close is NaN"),
        (bar(0, h="Infinity"), "high is infinite"),
        (bar(0, h="80", lo="90", o="85", c="85"), "high 80 is below low 90"),
        (bar(0, h="104", c="105"), r"high 104 is below max\(open 100, close 105\)"),
        (bar(0, lo="101"), r"low 101 is above min\(open 100, close 105\)"),
        (bar(0, v="-0.5"), "volume must not be negative, got -0.5"),
    ],
    ids=[
        "zero-price",
        "negative-price",
        "nan",
        "infinite",
        "high-below-low",
        "high-below-close",
        "low-above-open",
        "negative-volume",
    ],
)
def test_each_impossible_candle_is_refused_with_a_message_naming_its_time(candle, expected):
    with pytest.raises(BadCandleError, match=expected) as info:
        validate_candles([bar(-1), candle], "1h")
    message = str(info.value)
    assert message.startswith("bad candle 2024-01-01T00:00:00Z: ")
    assert "\n" not in message
    assert info.value.open_time == T0


def test_candles_out_of_order_are_refused():
    with pytest.raises(BadCandleError, match="bad candle 2024-01-01T01:00:00Z: out of order"):
        validate_candles([bar(0), bar(2), bar(1)], "1h")


def test_a_duplicated_candle_is_refused_even_if_not_adjacent():
    with pytest.raises(BadCandleError, match="duplicate candle"):
        validate_candles([bar(0), bar(1), bar(1)], "1h")
    with pytest.raises(BadCandleError, match="duplicate candle"):
        validate_candles([bar(0), bar(1), bar(0)], "1h")


def test_a_candle_off_the_timeframe_grid_is_refused():
    off = bar(0, at=T0 + timedelta(minutes=30))
    with pytest.raises(BadCandleError, match="bad candle 2024-01-01T00:30:00Z: open time is off the 1h grid"):
        validate_candles([bar(-1), off], "1h")
    assert is_on_grid(T0 + timedelta(minutes=30), "30m")


def test_a_naive_candle_time_is_refused():
    naive = bar(0, at=datetime(2024, 1, 1))
    with pytest.raises(BadCandleError, match="naive"):
        validate_candles([naive], "1h")


def test_zero_volume_is_allowed_because_real_exchanges_publish_it():
    assert validate_candles([bar(0, v="0")], "1h").candles[0].volume == 0
