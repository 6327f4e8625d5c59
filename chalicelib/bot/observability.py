"""Logs and metrics of the tick: powertools JSON in Lambda, plain readable lines in the CLI.

The service's one powertools ``Logger`` lives in ``chalicelib.logs``. Every tick line carries ``session_id``,
``strategy``, ``symbol`` and ``candle_time`` (appended keys). Metrics (CloudWatch EMF) are created only by the scheduled
function; the CLI never emits them.

Tracing (AWS X-Ray through powertools ``Tracer``) is optional: off unless ``ATB_TRACING=true``, and only then is
the X-Ray SDK imported (≈ 0.25 s of cold start otherwise spent for nothing). The SDK is not in the default bundle
(it would pull in botocore); to deploy with tracing add ``aws-xray-sdk`` to ``requirements.txt`` and turn on active
tracing for the tick function. Asked for without the SDK, tracing stays off with one warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from chalicelib import settings
from chalicelib.logs import SERVICE, logger, use_plain_logs

__all__ = ["SERVICE", "logger", "make_metrics", "set_candle_time", "tick_log_keys", "traced", "tracer",
           "use_plain_logs"]

TICK_KEYS = ("session_id", "strategy", "symbol", "timeframe", "candle_time")


@contextmanager
def tick_log_keys(**keys: Any) -> Iterator[None]:
    """Append the tick's keys to every log line inside the block, and remove them afterwards."""
    logger.append_keys(**{k: _plain(v) for k, v in keys.items()})
    try:
        yield
    finally:
        logger.remove_keys(list(TICK_KEYS))


def set_candle_time(candle_time: datetime | None) -> None:
    logger.append_keys(candle_time=_plain(candle_time))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        from chalicelib.trading.candles import format_time

        return format_time(value)
    return value


_tracer: Any = None  # None: not decided yet; False: off


def tracer() -> Any | None:
    """The powertools ``Tracer`` when ``ATB_TRACING`` is on (created once per process), else None."""
    global _tracer  # noqa: PLW0603 - one tracer per warm container
    if not settings.get().tracing:
        return None
    if _tracer is None:
        try:
            from aws_lambda_powertools import Tracer

            _tracer = Tracer(service=SERVICE)
        except ImportError as exc:
            logger.warning(f"ATB_TRACING is on but the X-Ray SDK is not installed ({exc}); tracing stays off")
            _tracer = False
    return _tracer or None


@contextmanager
def traced(name: str, **annotations: str | int) -> Iterator[None]:
    """An X-Ray subsegment around the block, annotated (searchable), when tracing is on; else nothing."""
    active = tracer()
    if active is None:
        yield
        return
    with active.provider.in_subsegment(name) as subsegment:
        for key, value in annotations.items():
            subsegment.put_annotation(key=key, value=value)
        yield


def make_metrics() -> Any:
    """EMF metrics for the scheduled tick (namespace from POWERTOOLS_METRICS_NAMESPACE, default ATB)."""
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=settings.get().metrics_namespace, service=SERVICE)
