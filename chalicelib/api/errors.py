"""One error shape for every failure: ``{"error": {"code", "message", "details": [...]}}`` with a 4xx/5xx status.

The entry point translates domain errors into HTTP here and nowhere else; an unexpected exception becomes a
500 that says nothing about internals (the traceback goes to the log).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from chalice import Response

from chalicelib import logs
from chalicelib.jsonutil import dumps

logger = Logger(service=logs.SERVICE, child=True)

#: Every /api/* response, errors included: JSON, and never stored by a browser or a proxy (balances, tokens' names).
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class ApiError(Exception):
    """An HTTP error raised by the API layer itself (bad parameter, auth, content type, body size)."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        assert status >= 400, "an error is never a success"
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response written by ``jsonutil.dumps`` (Decimal as exact numbers), not by Chalice."""
    return Response(body=dumps(body), headers={**JSON_HEADERS, **(headers or {})}, status_code=status)


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return json_response(body, status, headers)


def to_response(exc: BaseException) -> Response:
    """Translate any exception raised while serving a request into the error shape."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    from chalicelib.api.schemas import InvalidJson

    if isinstance(exc, InvalidJson):
        return error_response(400, "invalid_json", f"the body is not valid JSON: {exc}")

    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return error_response(422, "validation_failed", "the request body is not valid", validation_details(exc))

    from chalicelib.balances import AmbiguousSession, NoActiveSession
    from chalicelib.ledger import InsufficientFunds, InvalidChange, LedgerError, SessionNotFound
    from chalicelib.settings import ConfigurationError

    if isinstance(exc, AmbiguousSession):
        return error_response(400, exc.code, str(exc), [{"field": "session_id", "message": "pick one",
                                                         "choices": exc.choices}])
    if isinstance(exc, (NoActiveSession, SessionNotFound)):
        return error_response(404, exc.code, str(exc))
    if isinstance(exc, InsufficientFunds):
        return error_response(409, exc.code, str(exc))
    if isinstance(exc, InvalidChange):
        return error_response(422, exc.code, str(exc))
    if isinstance(exc, LedgerError):
        return error_response(422, exc.code, str(exc))
    if isinstance(exc, ConfigurationError):
        logger.error("configuration error while serving a request: %s", exc)
        return error_response(503, "service_unavailable", "the service is not configured correctly",
                              headers={"Retry-After": "30"})

    from chalicelib.db.errors import describe

    problem = describe(exc)
    if problem is not None:
        return _unavailable(problem.kind, problem.message, problem.retry_after, exc)
    logger.exception("unexpected error while serving a request")
    return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


def _unavailable(kind: str, message: str, retry_after: int, exc: BaseException) -> Response:
    """503 + Retry-After for an outage or contention: the request changed nothing and may be retried as is
    (with the same Idempotency-Key). The configuration and schema details go to the log, not to the caller."""
    if kind == "busy":
        logger.warning("request refused as busy: %s (%s)", message, type(exc).__name__)
        return error_response(503, "busy", "the account is busy; nothing was changed: retry shortly",
                              headers={"Retry-After": str(retry_after)})
    logger.error("database %s while serving a request: %s (%s)", kind, message, type(exc).__name__)
    return error_response(503, "service_unavailable", "the database is unavailable; nothing was changed: retry "
                                                      "shortly", headers={"Retry-After": str(retry_after)})


def validation_details(exc: Any) -> list[dict[str, Any]]:
    """pydantic errors as ``{"field", "message", "type"}`` (never echoing the input back)."""
    details = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in err.get("loc", ())) or None
        details.append({"field": field, "message": err.get("msg", "invalid"), "type": err.get("type")})
    return details
