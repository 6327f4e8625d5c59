"""The scheduled function is a dispatcher (issue 14); the worker ticks one bot per SQS message.

Dispatcher (``run_scheduled_tick``, every hour): seeds ``ATB_BOTS`` into the ``bots`` table on first deploy
(:func:`chalicelib.fleet.seed_bots`), applies the due scheduled deposits, selects the active bots whose candle
has closed and, when ``ATB_TICK_QUEUE_URL`` is set, sends one SQS message per due bot. Without a queue (one bot,
``chalice local``, tests) it ticks every active bot itself through the same :func:`tick_bot`, so one bot works
with no extra configuration.

Worker (``run_worker``, ``@app.on_sqs_message`` with batch size 1): ticks the message's bot with the existing
exactly-once tick. A tick that raises (or cannot reach its exchange) raises out of the handler, so SQS
redelivers the message and, after ``maxReceiveCount`` receives, moves it to the dead-letter queue; the other
bots' messages are separate invocations and commit on their own.

The queue is a standard queue, not FIFO: exactly-once already lives in the database (the session row lock and
``tick_log``'s unique (session, candle)), so a duplicate message finds nothing new and changes nothing; FIFO's
5-minute deduplication window would add nothing that holds longer, and its per-group ordering and 300 msg/s
(without batching) ceiling would only cost throughput. Each message still carries ``dedup`` = bot and candle
close, logged, so a duplicate delivery is visible.

A bad ``ATB_BOTS`` entry (unknown strategy, timeframe, symbol or exchange, or a second entry for a bot already
listed) fails alone: an error log naming the entry and why, ``TickErrors`` counted, status ``error`` in the
summary, and nothing written for it; the other bots still tick.

"Now" is the schedule event's ``time`` — when the schedule fired — so a retried or duplicated event asks for
exactly the same closed candles and changes nothing; a manual invocation without a time uses the clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine

from chalicelib import settings as config
from chalicelib.bot.observability import logger, make_metrics, traced
from chalicelib.bot.sessions import open_session
from chalicelib.bot.tick import TickSettings, fixed_clock, tick_session
from chalicelib.bots import bot_entries
from chalicelib.db.engine import get_engine
from chalicelib.db.types import utcnow
from chalicelib.settings import ConfigurationError
from chalicelib.trading.feeds import CcxtFeed, Feed


@lru_cache(maxsize=16)
def exchange_feed(exchange_id: str) -> Feed:
    """One ccxt feed per exchange, reused while the Lambda stays warm (markets load once)."""
    return CcxtFeed(exchange_id, timeout_ms=config.get().exchange_timeout_ms, retries=3)


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


class TickFailed(RuntimeError):
    """The worker's tick did not complete (exchange unreachable, bad candles): the message is retried."""


def _tick_settings() -> TickSettings:
    return TickSettings.from_settings(config.get())


def run_scheduled_tick(event_time: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """The dispatcher. Returns a small summary (the Lambda's response)."""
    from chalicelib import fleet

    logger.remove_keys(["session_id", "strategy", "symbol", "timeframe", "candle_time", "request_id"])
    if request_id:
        logger.append_keys(request_id=request_id)
    now = event_now(event_time)
    try:
        current = config.get()
        entries = bot_entries(current.bots)
        initial = current.initial_balance
        tick_settings = _tick_settings()
    except (ConfigurationError, ValueError) as exc:
        logger.error(f"Tick configuration is invalid: {exc}")
        return {"ok": False, "error": str(exc), "bots": []}
    engine = get_engine()
    summaries: list[dict[str, Any]] = []
    for outcome in fleet.seed_bots(entries, initial, engine=engine):
        if outcome.error is not None:
            summaries.append(_refuse_bot(outcome.entry, outcome.error))
    deposits = fleet.apply_due_deposits(now, engine=engine)
    due, stale = fleet.due_bots(now, engine=engine)
    queue = config.get().tick_queue_url
    if queue:
        summaries.extend(send_tick_messages(queue, due, now))
    else:
        active = [b for b in fleet.list_bots(engine) if b.status == "active"]
        if not active and not summaries:
            logger.warning("No active bot to tick (atb bots add, or ATB_BOTS on first deploy)")
        for bot in active:
            summaries.append(tick_bot(bot.bot_id, now, engine=engine, tick_settings=tick_settings))
    metrics = make_metrics()
    metrics.clear_metrics()
    metrics.add_metric(name="BotsDue", unit="Count", value=len(due))
    metrics.add_metric(name="StaleBots", unit="Count", value=stale)
    metrics.add_metric(name="DepositsApplied", unit="Count", value=sum(1 for d in deposits if not d.replayed))
    metrics.flush_metrics()
    return {"ok": all(s["status"] != "error" for s in summaries), "now": now.isoformat(), "bots": summaries,
            "queued": len(due) if queue else 0, "stale": stale,
            "deposits": [{"schedule_id": d.schedule_id, "period": d.period} for d in deposits if not d.replayed]}


def tick_message(bot_id: int, candle_close: datetime, now: datetime) -> dict[str, Any]:
    """The body of one bot's tick message; ``dedup`` names the bot and the candle close."""
    return {"bot_id": bot_id, "now": now.isoformat(), "candle_close": candle_close.isoformat(),
            "dedup": f"bot-{bot_id}-{candle_close:%Y%m%dT%H%M}"}


def send_tick_messages(queue_url: str, due: list[Any], now: datetime) -> list[dict[str, Any]]:
    """One SQS message per due bot, ten to a batch, eight batches in flight (10,000 bots: 1,000 calls of ~20 ms,
    about 3 s instead of 20 s in a row); a bot whose message was refused is reported and counted."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    sqs = boto3.client("sqs")  # boto3 clients are thread-safe

    def send(chunk: list[Any]) -> list[dict[str, Any]]:
        entries = [{"Id": str(i), "MessageBody": json.dumps(tick_message(d.bot_id, d.candle_close, now))}
                   for i, d in enumerate(chunk)]
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed = {f["Id"] for f in answer.get("Failed", [])}
        out = []
        for i, d in enumerate(chunk):
            if str(i) in failed:
                logger.error(f"Could not queue the tick of bot #{d.bot_id} ({d.label})")
            out.append({"bot": d.label, "bot_id": d.bot_id, "status": "error" if str(i) in failed else "queued"})
        return out

    chunks = [due[start:start + 10] for start in range(0, len(due), 10)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return [summary for batch in pool.map(send, chunks) for summary in batch]


def run_worker(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tick the bot of each message (batch size 1: one). Raises when a tick fails, so SQS retries the message
    and finally moves it to the dead-letter queue."""
    summaries = []
    engine = get_engine()
    for record in records:
        try:
            body = json.loads(record["body"])
            bot_id = int(body["bot_id"])
            now = event_now(str(body["now"]))
        except (KeyError, TypeError, ValueError) as exc:
            logger.error(f"Unreadable tick message {str(record.get('body'))[:200]!r}: {exc}")
            raise TickFailed("unreadable tick message") from exc
        logger.info(f"Tick message for bot #{bot_id} ({body.get('dedup')})")
        summaries.append(tick_bot(bot_id, now, engine=engine, raise_errors=True))
    return summaries


def _refuse_bot(entry: str, error: str) -> dict[str, Any]:
    """A bad ``ATB_BOTS`` entry: logged, counted, and nothing opened or written for it."""
    metrics = make_metrics()
    metrics.clear_metrics()
    metrics.add_dimension(name="Bot", value=entry[:100])
    logger.error(f"Bot definition refused in ATB_BOTS: {error}")
    metrics.add_metric(name="TickErrors", unit="Count", value=1)
    metrics.flush_metrics()
    return {"bot": entry, "status": "error", "error": error[:300]}


def _flush_bot(metrics: Any) -> None:
    """The bot's own metrics, unless ``ATB_PER_BOT_METRICS=false`` (each is a billed custom metric per bot)."""
    if config.get().per_bot_metrics:
        metrics.flush_metrics()
    else:
        metrics.clear_metrics()


def _fleet_errors(count: int) -> None:
    """``FleetTickErrors`` with the service dimension only: what the tick-errors alarm watches (one metric for
    every bot, so the alarm does not depend on which bots exist)."""
    metrics = make_metrics()
    metrics.clear_metrics()
    metrics.add_metric(name="FleetTickErrors", unit="Count", value=count)
    metrics.flush_metrics()


def _events(label: str, result: Any) -> None:
    from chalicelib import notify

    for outcome in result.outcomes:
        when = outcome.candle_time.isoformat()
        for _ in range(outcome.opened):
            notify.publish("trade_opened", {"bot": label, "candle": when, "close": str(outcome.close)})
        for _ in range(outcome.closed):
            notify.publish("trade_closed", {"bot": label, "candle": when, "close": str(outcome.close),
                                            "balance": str(outcome.balance)})
        if outcome.decision == "blocked" and "drawdown" in outcome.detail:
            notify.publish("drawdown_limit", {"bot": label, "candle": when, "detail": outcome.detail[:300]})


def tick_bot(bot_id: int, now: datetime, *, engine: Engine, tick_settings: TickSettings | None = None,
             raise_errors: bool = False) -> dict[str, Any]:
    """Open (or find) the bot's account and apply its closed candles once. A paused or removed bot is skipped."""
    from chalicelib import fleet, notify

    bot = fleet.get_bot(bot_id, engine)
    if bot is None or bot.status != "active":
        return {"bot_id": bot_id, "status": "skipped", "message": "removed" if bot is None else "paused"}
    spec = fleet.spec_of(bot)
    label = f"{bot.strategy}:{bot.symbol}:{bot.timeframe}:{bot.exchange}"
    metrics = make_metrics()
    # powertools keeps metric state per process: drop anything a crashed earlier invocation left unflushed,
    # so this bot's figures never carry another bot's dimension.
    metrics.clear_metrics()
    metrics.add_dimension(name="Bot", value=f"{bot.strategy}:{bot.symbol}:{bot.timeframe}")
    summary: dict[str, Any] = {"bot": label, "bot_id": bot_id}
    try:
        with traced("tick", bot=label):
            opening = open_session(engine, spec, initial_balance=bot.initial_capital, resume=True)
            if bot.session_id != opening.session_id:
                fleet.attach_session(bot_id, opening.session_id, engine)
            result = tick_session(engine, opening.session_id, make_feed(bot.exchange), clock=fixed_clock(now),
                                  settings=tick_settings or _tick_settings())
    except Exception as exc:  # one failing bot must not stop the others
        logger.exception(f"Tick failed for {spec.label}: {exc}")
        metrics.add_metric(name="TickErrors", unit="Count", value=1)
        _flush_bot(metrics)
        _fleet_errors(1)
        notify.publish("bot_error", {"bot": label, "error": str(exc)[:300]})
        if raise_errors:
            raise
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
    _flush_bot(metrics)
    _fleet_errors(1 if failed else 0)
    _events(label, result)
    if failed:
        notify.publish("bot_error", {"bot": label, "error": result.message[:300]})
        if raise_errors:
            raise TickFailed(f"{label}: {result.status}: {result.message[:200]}")
    summary.update(
        session_id=result.session_id, status=result.status, message=result.message,
        candles_applied=result.candles_applied, trades_opened=result.trades_opened,
        trades_closed=result.trades_closed, cursor=result.cursor.isoformat() if result.cursor else None,
        balance=str(result.balance) if result.balance is not None else None,
    )
    return summary
