"""Candles and the rules a candle must obey before any money moves on it.

A candle is identified by its OPEN time (UTC, on the timeframe's grid, aligned to the Unix epoch). It is
*closed* once ``open_time + timeframe <= now``; only closed candles are ever traded on.

``validate_candles`` is the gate every batch passes before use: a malformed, duplicated, out-of-order or
off-grid candle raises :class:`BadCandleError` (one line naming the candle and the fault), so the caller can
stop that session's tick and change nothing. Missing candles (an exchange outage) are *not* an error: they
come back as :class:`Gap` records for the caller to log and skip over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

_TIMEFRAMES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
SUPPORTED_TIMEFRAMES: tuple[str, ...] = tuple(_TIMEFRAMES)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UnsupportedTimeframeError(ValueError):
    """A timeframe string this project does not trade on."""


class BadCandleError(ValueError):
    """A candle that must not be traded on; ``str(err)`` is one line naming the candle time and the fault."""

    def __init__(self, open_time: datetime | None, problem: str) -> None:
        self.open_time = open_time
        self.problem = problem
        where = f"candle {format_time(open_time)}" if open_time is not None else "candle"
        super().__init__(f"bad {where}: {problem}")


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar; ``open_time`` is the UTC-aware open time; prices and volume are exact Decimals."""

    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def close_time(self, timeframe: str) -> datetime:
        """When this candle closes (the open time of the next one)."""
        return self.open_time + timeframe_to_timedelta(timeframe)


@dataclass(frozen=True, slots=True)
class Gap:
    """Candles missing between two present ones (or between the cursor and the first one)."""

    after: datetime  # open time of the last candle before the hole
    before: datetime  # open time of the first candle after the hole
    missing: int  # how many grid slots are empty

    def describe(self) -> str:
        start, end = format_time(self.after), format_time(self.before)
        return f"{self.missing} candle(s) missing between {start} and {end}"


@dataclass(frozen=True, slots=True)
class ValidatedCandles:
    """Candles that passed validation, oldest first, with any gaps found on the grid."""

    candles: tuple[Candle, ...]
    gaps: tuple[Gap, ...]


def format_time(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``: how candle times appear in messages and logs."""
    if value.tzinfo is None:
        return value.isoformat() + " (naive)"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timeframe_to_timedelta(timeframe: str) -> timedelta:
    """``"1h"`` -> ``timedelta(hours=1)``; raises :class:`UnsupportedTimeframeError` for anything else."""
    try:
        return _TIMEFRAMES[timeframe]
    except KeyError:
        raise UnsupportedTimeframeError(
            f"unsupported timeframe {timeframe!r} (supported: {', '.join(SUPPORTED_TIMEFRAMES)})"
        ) from None


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")


def is_on_grid(open_time: datetime, timeframe: str) -> bool:
    """True when ``open_time`` is a whole number of timeframes after the Unix epoch (how exchanges align)."""
    step = timeframe_to_timedelta(timeframe)
    return (open_time - _EPOCH) % step == timedelta(0)


def floor_to_grid(moment: datetime, timeframe: str) -> datetime:
    """The open time of the candle that contains ``moment``."""
    _require_aware(moment, "moment")
    step = timeframe_to_timedelta(timeframe)
    return moment.astimezone(UTC) - ((moment - _EPOCH) % step)


def last_closed_open_time(now: datetime, timeframe: str) -> datetime:
    """Open time of the newest candle that is closed at ``now`` (its close time is at or before ``now``)."""
    return floor_to_grid(now, timeframe) - timeframe_to_timedelta(timeframe)


def is_closed(candle: Candle, timeframe: str, now: datetime) -> bool:
    """A candle is closed when ``open_time + timeframe <= now``."""
    return candle.open_time + timeframe_to_timedelta(timeframe) <= now


def from_epoch_ms(timestamp_ms: int) -> datetime:
    """Epoch milliseconds (how exchanges stamp candles) -> UTC-aware datetime."""
    return _EPOCH + timedelta(milliseconds=timestamp_ms)


def to_epoch_ms(value: datetime) -> int:
    """UTC-aware datetime -> epoch milliseconds (exact, no float)."""
    _require_aware(value, "time")
    return (value - _EPOCH) // timedelta(milliseconds=1)


def check_candle(candle: Candle) -> None:
    """Raise :class:`BadCandleError` if this one candle's own values are impossible."""
    t = candle.open_time
    if not isinstance(t, datetime):
        raise BadCandleError(None, f"open_time is not a datetime: {t!r}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise BadCandleError(t, "open_time is naive; candle times must be UTC-aware")
    for name in ("open", "high", "low", "close"):
        value = getattr(candle, name)
        if not isinstance(value, Decimal):
            raise BadCandleError(t, f"{name} is {type(value).__name__}, not Decimal: {value!r}")
        if value.is_nan():
            raise BadCandleError(t, f"{name} is NaN")
        if value.is_infinite():
            raise BadCandleError(t, f"{name} is infinite ({value})")
        if value <= 0:
            raise BadCandleError(t, f"{name} price must be positive, got {value}")
    volume = candle.volume
    if not isinstance(volume, Decimal):
        raise BadCandleError(t, f"volume is {type(volume).__name__}, not Decimal: {volume!r}")
    if not volume.is_finite():
        raise BadCandleError(t, f"volume is not finite ({volume})")
    if volume < 0:
        raise BadCandleError(t, f"volume must not be negative, got {volume}")
    if candle.high < candle.low:
        raise BadCandleError(t, f"high {candle.high} is below low {candle.low}")
    if candle.high < max(candle.open, candle.close):
        raise BadCandleError(t, f"high {candle.high} is below max(open {candle.open}, close {candle.close})")
    if candle.low > min(candle.open, candle.close):
        raise BadCandleError(t, f"low {candle.low} is above min(open {candle.open}, close {candle.close})")


def validate_candles(candles: Sequence[Candle], timeframe: str, after: datetime | None = None) -> ValidatedCandles:
    """Check a batch (oldest first) before anything is traded on it.

    ``after`` is the session's cursor (open time of the last candle already applied): every candle must be
    strictly newer, and a hole between the cursor and the first candle is reported as a gap too.

    Raises :class:`BadCandleError` on the first fault; returns the candles and the gaps otherwise.
    """
    if after is not None:
        _require_aware(after, "after")
    previous = after
    seen: set[datetime] = set()
    for candle in candles:
        check_candle(candle)
        t = candle.open_time
        if not is_on_grid(t, timeframe):
            raise BadCandleError(t, f"open time is off the {timeframe} grid")
        if t in seen:
            raise BadCandleError(t, "duplicate candle (same open time twice)")
        seen.add(t)
        if previous is not None:
            if t == previous:
                raise BadCandleError(t, "duplicate candle (same open time as the one before it)")
            if t < previous:
                raise BadCandleError(t, f"out of order: comes after {format_time(previous)} but is older")
        previous = t
    return ValidatedCandles(candles=tuple(candles), gaps=find_gaps(candles, timeframe, after))


def find_gaps(candles: Sequence[Candle], timeframe: str, after: datetime | None = None) -> tuple[Gap, ...]:
    """The holes in candles already validated (oldest first, on the grid): between ``after`` (a cursor) and the
    first candle, and between neighbours. No candle is checked again."""
    step = timeframe_to_timedelta(timeframe)
    previous = after
    gaps: list[Gap] = []
    for candle in candles:
        t = candle.open_time
        if previous is not None:
            missing = (t - previous) // step - 1
            if missing > 0:
                gaps.append(Gap(after=previous, before=t, missing=missing))
        previous = t
    return tuple(gaps)
