"""The one powertools ``Logger`` of the service, for all three Lambdas (API, tick, migrate) and the CLI.

Modules log through a child logger (``Logger(service=logs.SERVICE, child=True)``, named after the module), whose
lines go out through this logger's one handler: powertools JSON in Lambda, ``level: message`` lines on stderr in
the CLI (:func:`use_plain_logs`). Each Lambda entry point is wrapped by :func:`lambda_entry`: powertools'
``inject_lambda_context`` (``cold_start``, ``function_name``, ``function_request_id`` … on every line) and a
``correlation_id`` per invocation — the API Gateway request id for an HTTP request, the EventBridge event id
for a scheduled tick — generated when the event carries none.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from chalicelib import settings

SERVICE = settings.service_name()

logger = Logger(service=SERVICE)
_JSON_FORMATTER = logger.registered_formatter

R = TypeVar("R")


def lambda_entry(correlation: Callable[[Any], object]) -> Callable[[Callable[[Any, Any], R]],
                                                                   Callable[[Any, Any], R]]:
    """Wrap a Lambda handler ``(event, context)``: powertools' ``inject_lambda_context`` adds the Lambda context
    keys to every line of the invocation, and ``correlation_id`` is ``correlation(event)`` (or a fresh id)."""

    def decorate(handler: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
        def run(event: Any, context: Any) -> R:
            found = correlation(event)
            logger.set_correlation_id(str(found) if found else str(uuid.uuid4()))
            return handler(event, context)

        run.__name__ = getattr(handler, "__name__", "handler")
        run.__doc__ = handler.__doc__
        injected: Callable[[Any, Any], R] = logger.inject_lambda_context(run)
        return injected

    return decorate


def api_gateway_request_id(event: Any) -> object:
    """The API Gateway request id of an HTTP event (``requestContext.requestId``), if any."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    return context.get("requestId") if isinstance(context, dict) else None


def event_id(event: Any) -> object:
    """The id of an EventBridge (scheduled) event, if any."""
    return event.get("id") if isinstance(event, dict) else None


class PlainFormatter(LambdaPowertoolsFormatter):
    """Keeps powertools' keys (so ``append_keys`` works) but prints ``level: message`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def use_plain_logs(level: int = logging.WARNING) -> None:
    """Human logs for the terminal: ``warning: …`` lines on stderr instead of JSON on stdout."""
    handler = logger.registered_handler
    handler.setFormatter(PlainFormatter())
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)
    logger.setLevel(level)


def use_json_logs() -> None:
    """Back to powertools JSON (what Lambda writes), e.g. after a CLI command ran in the same process."""
    logger.registered_handler.setFormatter(_JSON_FORMATTER)
