"""HTTP translation for each route: read parameters, authenticate, call one use case, write the response.

Every handler takes the request explicitly (``app.py`` passes ``app.current_request``), so tests and the
concurrency suite can call it from threads; every failure leaves through ``errors.to_response``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, Protocol

from chalice import Response

from chalicelib.api import service
from chalicelib.api.auth import Principal, Scope, authenticate
from chalicelib.api.errors import ApiError, json_response, to_response
from chalicelib.ids import MAX_BIGINT_ID, MAX_INT_ID
from chalicelib.ledger.vocabulary import DEFAULT_PAGE, MAX_PAGE

MAX_IDEMPOTENCY_KEY = service.MAX_IDEMPOTENCY_KEY
_IDEMPOTENCY_KEY = re.compile(rf"^[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY}}}$")  # visible ASCII
REPLAY_HEADER = "Idempotent-Replayed"


class ApiRequest(Protocol):
    """What a handler reads from a request (``chalice.app.Request`` has all of it)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def query_params(self) -> Mapping[str, str] | None: ...

    @property
    def raw_body(self) -> bytes | str: ...


Handler = Callable[[ApiRequest, Principal | None], Response]


def endpoint(scope: Scope | None, params: tuple[str, ...] = ()) -> Callable[[Handler],
                                                                          Callable[[ApiRequest | None], Response]]:
    """Authenticate (unless ``scope`` is None), refuse query parameters the route does not take (a typo such as
    ``?sesion_id=2`` must not silently mean the default session), and turn every exception into the error shape."""

    def decorate(handler: Handler) -> Callable[[ApiRequest | None], Response]:
        @wraps(handler)
        def serve(request: ApiRequest | None) -> Response:
            try:
                if request is None:  # Chalice always sets current_request for an HTTP event
                    raise RuntimeError("no current request")
                principal = authenticate(request.headers, scope) if scope else None
                _known_params(request, params)
                return handler(request, principal)
            except Exception as exc:
                return to_response(exc)

        return serve

    return decorate


# --- parameters ------------------------------------------------------------------------------------------------


def _known_params(request: ApiRequest, known: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query_params or {}) - set(known))
    if unknown:
        takes = f"this route takes {', '.join(known)}" if known else "this route takes no query parameters"
        raise ApiError(400, "invalid_parameter", f"unknown query parameter: {takes}",
                       [{"field": name[:40], "message": "unknown parameter"} for name in unknown[:5]])


def _param(request: ApiRequest, name: str) -> str | None:
    params = request.query_params or {}
    value = params.get(name)
    return None if value is None else str(value)


def _int_param(request: ApiRequest, name: str, *, low: int, high: int, default: int | None = None) -> int | None:
    """An integer query parameter within ``[low, high]``; absent gives ``default``, but empty (``?limit=``) is an
    error, as is any value the database column could not hold (checked here, before the database sees it)."""
    text = _param(request, name)
    if text is None:
        return default
    bound = f"between {low} and {high}"
    if not re.fullmatch(r"[0-9]{1,20}", text) or not (low <= int(text) <= high):
        shown = "empty" if text == "" else "not an integer in range"
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer {bound} ({shown})",
                       [{"field": name, "message": f"must be an integer {bound}"}])
    return int(text)


def _session_id(request: ApiRequest) -> int | None:
    return _int_param(request, "session_id", low=1, high=MAX_INT_ID)


def _page(request: ApiRequest, max_id: int) -> tuple[int, int | None]:
    limit = _int_param(request, "limit", low=1, high=MAX_PAGE, default=DEFAULT_PAGE)
    assert limit is not None
    return limit, _int_param(request, "before", low=1, high=max_id)


# --- routes ----------------------------------------------------------------------------------------------------


@endpoint("read", ("session_id",))
def get_balance(request: ApiRequest, _: Principal | None) -> Response:
    return json_response(service.balance(_session_id(request)).body())


@endpoint("read", ("session_id", "limit", "before"))
def get_exposure(request: ApiRequest, _: Principal | None) -> Response:
    """The exposure now and its history, newest first; ``before`` is the previous page's ``next_cursor``."""
    from datetime import UTC, datetime

    from chalicelib.api.schemas import MAX_EPOCH_SECONDS

    limit = _int_param(request, "limit", low=1, high=MAX_PAGE, default=MAX_PAGE)
    assert limit is not None
    before = _int_param(request, "before", low=1, high=MAX_EPOCH_SECONDS)
    at = None if before is None else datetime.fromtimestamp(before, UTC)
    return json_response(service.exposure(_session_id(request), limit, at).body())


@endpoint("write", ("session_id",))
def post_balance(request: ApiRequest, principal: Principal | None) -> Response:
    assert principal is not None
    session_id = _session_id(request)
    key = _idempotency_key(request)
    body = _json_body(request)
    from chalicelib.api.schemas import parse_balance_change
    from chalicelib.ledger import Actor

    change = parse_balance_change(body)
    op, amount = change.operation
    outcome = service.change_balance(op, amount, reason=change.reason, actor=Actor(principal.name, change.updated_by),
                                     session_id=session_id, idempotency_key=key)
    if not outcome.matches_request:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was already used for a different change; use a new key",
                       [{"field": "Idempotency-Key", "message": "already used for a different request"}])
    headers = {REPLAY_HEADER: "true"} if outcome.replayed else {}
    return json_response(outcome.body.body(), 201, headers)


@endpoint("read", ("session_id", "limit", "before"))
def get_history(request: ApiRequest, _: Principal | None) -> Response:
    limit, before = _page(request, MAX_BIGINT_ID)
    return json_response(service.history(_session_id(request), limit, before).body())


@endpoint("read", ("session_id",))
def get_positions(request: ApiRequest, _: Principal | None) -> Response:
    return json_response(service.positions(_session_id(request)).body())


@endpoint("read", ("session_id", "limit", "before"))
def get_trades(request: ApiRequest, _: Principal | None) -> Response:
    limit, before = _page(request, MAX_INT_ID)
    return json_response(service.trades(_session_id(request), limit, before).body())


@endpoint("read", ("status",))
def get_sessions(request: ApiRequest, _: Principal | None) -> Response:
    status = _param(request, "status")
    if status not in (None, "active", "ended"):
        raise ApiError(400, "invalid_parameter", "status must be active or ended",
                       [{"field": "status", "message": "must be active or ended"}])
    return json_response(service.sessions(status).body())


@endpoint("read")
def get_me(_request: ApiRequest, principal: Principal | None) -> Response:
    """``GET /api/me``: the caller's token name and scope (the dashboard hides the change form for ``read``)."""
    from chalicelib.api.schemas import MeResponse

    assert principal is not None
    return json_response(MeResponse(name=principal.name, scope=principal.scope).body())


@endpoint("read")
def get_health(_request: ApiRequest, _: Principal | None) -> Response:
    status, report = service.health()
    return json_response(report.body(), status, {"Retry-After": "5"} if status == 503 else None)


@endpoint("read")
def get_openapi(_request: ApiRequest, _: Principal | None) -> Response:
    from chalicelib.api.openapi import openapi_document

    return json_response(openapi_document())


# --- request body ----------------------------------------------------------------------------------------------


def _idempotency_key(request: ApiRequest) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"Idempotency-Key must be 1–{MAX_IDEMPOTENCY_KEY} visible ASCII characters",
                       [{"field": "Idempotency-Key",
                         "message": f"1–{MAX_IDEMPOTENCY_KEY} visible ASCII characters"}])
    return key


def _json_body(request: ApiRequest) -> bytes:
    from chalicelib.api.schemas import MAX_BODY_BYTES, is_utf16_or_32

    content_type = (request.headers.get("content-type") or "").strip()
    media_type, _, params = content_type.partition(";")
    charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", params, re.IGNORECASE)
    if media_type.strip().lower() != "application/json" or (
        charset and charset.group(1).lower() not in ("utf-8", "utf8")
    ):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as Content-Type: application/json (got {content_type[:80]!r})")
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = request.raw_body
    body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw or b"")
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object")
    if is_utf16_or_32(body):  # refused like "charset=utf-16": the same 415 whether declared or not
        raise ApiError(415, "unsupported_media_type", "send the body as UTF-8 JSON (UTF-16 and UTF-32 are refused)")
    return body


def route_kwargs() -> dict[str, Any]:
    """Options every API route shares: no CORS (same origin), and any content type reaches the handler so a
    wrong one gets this API's 415 error shape instead of Chalice's."""
    return {"cors": False, "content_types": ["*/*"]}
