"""The scheduled tick in Lambda: every bot named in ``ATB_BOTS`` gets its session opened (or recovered) and one
tick against its exchange. One failing bot is logged and counted (``TickErrors``) and does not stop the others.

Each entry is read through :class:`chalicelib.bots.BotSpec`. A bad entry (unknown strategy, timeframe, symbol or
exchange, or a second entry for a bot already listed) fails that one bot: an error log naming the entry and why,
``TickErrors`` counted, status ``error`` in the summary, and nothing written for it; the other bots still tick.

"Now" is the schedule event's ``time`` — when the schedule fired — so a retried or duplicated event asks for
exactly the same closed candles and changes nothing; a manual invocation without a time uses the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from chalicelib import settings
from chalicelib.bots import BotDefinitionError, BotSpec, bot_entries
from chalicelib.db.engine import get_engine
from chalicelib.db.types import utcnow
from chalicelib.engine.observability import logger, make_metrics, traced
from chalicelib.engine.sessions import open_session
from chalicelib.engine.tick import TickSettings, fixed_clock, tick_session
from chalicelib.settings import ConfigurationError
from chalicelib.trading.feeds import CcxtFeed, Feed


@lru_cache(maxsize=16)
def exchange_feed(exchange_id: str) -> Feed:
    """One ccxt feed per exchange, reused while the Lambda stays warm (markets load once)."""
    return CcxtFeed(exchange_id, timeout_ms=settings.get().exchange_timeout_ms, retries=3)


#: How a bot's exchange becomes a feed; tests replace it with a fake exchange.
make_feed: Callable[[str], Feed] = exchange_feed


def event_now(event_time: str | None) -> datetime:
    if event_time:
        try:
            parsed = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
        except ValueError:
            logger.warning(f"Unreadable schedule event time {event_time!r}; using the clock")
        else:
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
    return utcnow()


def run_scheduled_tick(event_time: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """Tick every configured bot once. Returns a small summary (the Lambda's response)."""
    logger.remove_keys(["session_id", "strategy", "symbol", "timeframe", "candle_time", "request_id"])
    if request_id:
        logger.append_keys(request_id=request_id)
    now = event_now(event_time)
    try:
        config = settings.get()
        entries = bot_entries(config.bots)
        initial = config.initial_balance
        tick_settings = TickSettings(max_candles_per_tick=config.max_candles_per_tick)
    except (ConfigurationError, ValueError) as exc:
        logger.error(f"Tick configuration is invalid: {exc}")
        return {"ok": False, "error": str(exc), "bots": []}
    if not entries:
        logger.warning("ATB_BOTS is empty: no bot to tick")
    engine = get_engine()
    summaries: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str, str], str] = {}
    for entry in entries:
        try:
            bot = BotSpec.parse(entry)
            if bot.identity in seen:
                raise BotDefinitionError(f"bot {entry!r}: the same bot as {seen[bot.identity]!r} "
                                         "(a bot is its symbol, timeframe, exchange and mode)")
        except BotDefinitionError as exc:
            summaries.append(_refuse_bot(entry, exc))
            continue
        seen[bot.identity] = entry
        summaries.append(_tick_bot(engine, bot, now, initial, tick_settings))
    return {"ok": all(s["status"] not in ("error",) for s in summaries), "now": now.isoformat(), "bots": summaries}


def _refuse_bot(entry: str, exc: BotDefinitionError) -> dict[str, Any]:
    """A bad ``ATB_BOTS`` entry: logged, counted, and nothing opened or written for it."""
    metrics = make_metrics()
    metrics.clear_metrics()
    metrics.add_dimension(name="Bot", value=entry[:100])
    logger.error(f"Bot definition refused in ATB_BOTS: {exc}")
    metrics.add_metric(name="TickErrors", unit="Count", value=1)
    metrics.flush_metrics()
    return {"bot": entry, "status": "error", "error": str(exc)[:300]}


def _tick_bot(engine: Any, bot: BotSpec, now: datetime, initial: Decimal, limits: TickSettings) -> dict[str, Any]:
    metrics = make_metrics()
    # powertools keeps metric state per process: drop anything a crashed earlier invocation left unflushed,
    # so this bot's figures never carry another bot's dimension.
    metrics.clear_metrics()
    metrics.add_dimension(name="Bot", value=f"{bot.strategy}:{bot.symbol}:{bot.timeframe}")
    summary: dict[str, Any] = {"bot": f"{bot.strategy}:{bot.symbol}:{bot.timeframe}:{bot.exchange}"}
    try:
        with traced("tick", bot=summary["bot"]):
            opening = open_session(engine, bot, initial_balance=initial, resume=True)
            result = tick_session(engine, opening.session_id, make_feed(bot.exchange), clock=fixed_clock(now),
                                  settings=limits)
    except Exception as exc:  # one failing bot must not stop the others
        logger.exception(f"Tick failed for {bot.label}: {exc}")
        metrics.add_metric(name="TickErrors", unit="Count", value=1)
        metrics.flush_metrics()
        summary.update(status="error", error=str(exc)[:300])
        return summary
    failed = result.status in ("feed_error", "bad_candles")
    metrics.add_metric(name="TickDuration", unit="Milliseconds", value=result.duration_ms)
    metrics.add_metric(name="CandlesApplied", unit="Count", value=result.candles_applied)
    metrics.add_metric(name="TradesOpened", unit="Count", value=result.trades_opened)
    metrics.add_metric(name="TradesClosed", unit="Count", value=result.trades_closed)
    metrics.add_metric(name="TickErrors", unit="Count", value=1 if failed else 0)
    if result.balance is not None:
        metrics.add_metric(name="Balance", unit="None", value=float(result.balance))
    if result.equity is not None:
        metrics.add_metric(name="Equity", unit="None", value=float(result.equity))
    metrics.flush_metrics()
    summary.update(
        session_id=result.session_id, status=result.status, message=result.message,
        candles_applied=result.candles_applied, trades_opened=result.trades_opened,
        trades_closed=result.trades_closed, cursor=result.cursor.isoformat() if result.cursor else None,
        balance=str(result.balance) if result.balance is not None else None,
    )
    return summary
