"""Events for the owner (issue 14): trade opened/closed, drawdown limit reached, bot error — published to the SNS
topic ``ATB_EVENTS_TOPIC_ARN`` (the alarms' topic; its email subscription is a stack parameter) and, when
``ATB_TELEGRAM_SECRET_ARN`` names a ``{"token", "chat_id"}`` secret, sent to Telegram as well.

Delivery never fails a tick: the ledger has already committed when an event is sent, so a failed send is logged
and counted (``NotificationErrors``), not retried (a retried tick finds nothing new and sends nothing twice).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from aws_lambda_powertools import Logger

from chalicelib import logs, settings

EVENT_TYPES = ("trade_opened", "trade_closed", "drawdown_limit", "bot_error")
logger = Logger(service=logs.SERVICE, child=True)


def _text(event: str, details: dict[str, Any]) -> str:
    bot = details.get("bot", "")
    body = ", ".join(f"{k}={v}" for k, v in details.items() if k != "bot")
    return f"atb {event.replace('_', ' ')}: {bot} {body}".strip()


def publish(event: str, details: dict[str, Any]) -> list[str]:
    """Send one event everywhere configured; returns where it went (``sns``, ``telegram``)."""
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event!r}")
    sent: list[str] = []
    message = json.dumps({"event": event, **details}, default=str, sort_keys=True)
    topic = settings.get().events_topic_arn
    if topic:
        try:
            import boto3

            boto3.client("sns").publish(TopicArn=topic, Subject=f"atb: {event.replace('_', ' ')}"[:100],
                                        Message=message,
                                        MessageAttributes={"event": {"DataType": "String", "StringValue": event}})
            sent.append("sns")
        except Exception as exc:  # delivery must not fail a committed tick
            logger.warning("SNS publish of %s failed: %s", event, type(exc).__name__)
    secret = settings.get().telegram_secret_arn
    if secret:
        try:
            send_telegram(_text(event, details), settings.get_secret_json(secret))
            sent.append("telegram")
        except Exception as exc:
            logger.warning("Telegram delivery of %s failed: %s", event, type(exc).__name__)
    return sent


def send_telegram(text: str, credentials: dict[str, Any], timeout: float = 5.0) -> None:
    """POST ``sendMessage`` to the Bot API (``ATB_TELEGRAM_API_BASE``); raises unless it answers ``ok``."""
    token, chat = str(credentials.get("token", "")), str(credentials.get("chat_id", ""))
    if not token or not chat:
        raise settings.ConfigurationError("the Telegram secret needs token and chat_id")
    url = f"{settings.get().telegram_api_base}/bot{token}/sendMessage"
    data = json.dumps({"chat_id": chat, "text": text[:4000]}).encode()
    if not url.startswith(("https://", "http://")):
        raise settings.ConfigurationError("ATB_TELEGRAM_API_BASE must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
        answer = json.loads(response.read() or b"{}")
    if not answer.get("ok"):
        raise RuntimeError(f"Telegram refused the message: {str(answer.get('description', ''))[:100]}")
