"""The OpenAPI 3.1 document, generated from the pydantic models in ``schemas`` (built once per process).

Served at ``GET /api/openapi.json`` behind a read token like every other ``/api/*`` route but live: it holds
no secrets, but the API is a single owner's and nothing about it needs to be public (promise 8).
"""

from __future__ import annotations

import functools
from typing import Any

from chalicelib.api.service import MAX_IDEMPOTENCY_KEY
from chalicelib.ids import MAX_BIGINT_ID, MAX_INT_ID
from chalicelib.ledger.vocabulary import DEFAULT_PAGE, MAX_PAGE


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}


def _ok(model: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description,
                            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}}
    if headers:
        body["headers"] = headers
    return body


def _links(**targets: tuple[str, dict[str, str]]) -> dict[str, Any]:
    """OpenAPI links: how one response's fields feed the next request (stateful clients and test tools)."""
    return {name: {"operationId": op, "parameters": params} for name, (op, params) in targets.items()}


def _param(name: str, description: str, schema: dict[str, Any], where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": False, "description": description, "schema": schema}


SESSION_ID = _param("session_id", "Session to use; default: the only active session (400 lists the choices "
                                  "when several are active). Present means not empty.",
                    {"type": "integer", "minimum": 1, "maximum": MAX_INT_ID})
LIMIT = _param("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE})


def _before(max_id: int) -> dict[str, Any]:
    return _param("before", "Cursor from the previous page's next_cursor (entries older than it).",
                  {"type": "integer", "minimum": 1, "maximum": max_id})

AUTH_ERRORS = {"401": _error("Missing or invalid bearer token"),
               "403": _error("Token lacks the scope this operation needs")}
SESSION_ERRORS = {"400": _error("Bad parameter, or several active sessions (details list the choices)"),
                  "404": _error("No such session, or no active session")}


def _body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}}


def fleet_paths() -> dict[str, Any]:
    """Bots and deposit schedules (issue 14)."""
    changed = {**AUTH_ERRORS, "400": _error("Invalid JSON"), "413": _error("Body too large"),
               "415": _error("Content-Type is not application/json"),
               "422": _error("Not a valid bot or schedule (details say why); nothing changed")}
    return {
        "/api/bots": {
            "get": {"operationId": "getBots", "summary": "Bots the dispatcher ticks",
                    "responses": {"200": _ok("BotsResponse", "The bots"), **AUTH_ERRORS}},
            "post": {"operationId": "addBot", "summary": "Add a bot (write token); its first tick opens its account",
                     "requestBody": _body("BotRequest"),
                     "responses": {"201": _ok("BotOut", "The bot"), **changed,
                                   "409": _error("A bot already trades this symbol, timeframe and exchange")}}},
        "/api/bots/{bot_id}": {"patch": {
            "operationId": "changeBot", "summary": "Pause or resume a bot (write token); the account is kept",
            "parameters": [{"name": "bot_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT_ID}}],
            "requestBody": _body("BotPatch"),
            "responses": {"200": _ok("BotOut", "The bot"), **changed, "404": _error("No such bot")}}},
        "/api/schedules": {
            "get": {"operationId": "getSchedules", "summary": "Deposit schedules and their next deposit",
                    "responses": {"200": _ok("SchedulesResponse", "The schedules"), **AUTH_ERRORS}},
            "post": {"operationId": "addSchedule",
                     "summary": "Deposit an amount every period (write token); each period is applied once",
                     "parameters": [SESSION_ID], "requestBody": _body("ScheduleRequest"),
                     "responses": {"201": _ok("ScheduleOut", "The schedule"), **changed, **SESSION_ERRORS}}},
    }


def performance_parameters() -> list[dict[str, Any]]:
    """``by``, ``from`` and ``to`` of ``GET /api/performance`` (issue 13)."""
    moment = {"type": "string", "description": "ISO 8601 date (midnight UTC) or date and time (UTC unless it "
                                               "has an offset), e.g. 2024-01-31 or 2024-01-31T12:00:00Z"}
    return [_param("by", "Group by the strategy that opened each trade, or by symbol.",
                   {"type": "string", "enum": ["strategy", "symbol"], "default": "strategy"}),
            _param("from", "Trades closed at or after this market time (included).", moment),
            _param("to", "Trades closed before this market time (excluded); after from.", moment)]


@functools.lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    from pydantic import BaseModel
    from pydantic.json_schema import JsonSchemaMode, models_json_schema

    from chalicelib.api import schemas

    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (schemas.BalanceChangeRequest, "validation"),
        *((m, "serialization") for m in (
            schemas.ErrorResponse, schemas.BalanceResponse, schemas.BalanceChangeResponse, schemas.HistoryPage,
            schemas.ExposureResponse, schemas.PositionsResponse, schemas.TradesPage, schemas.SessionsResponse,
            schemas.HealthResponse,
            schemas.MeResponse, schemas.BotsResponse, schemas.BotOut, schemas.SchedulesResponse,
            schemas.ScheduleOut, schemas.PerformanceResponse)),
        (schemas.BotRequest, "validation"), (schemas.BotPatch, "validation"), (schemas.ScheduleRequest, "validation"),
    ]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    components = top.get("$defs", {})
    read: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "atb paper-trading bot API", "version": "1",
                 "description": "Balance, manual capital changes, history, positions and trades of a paper-"
                                "trading bot. Money is exact: JSON numbers written from decimal text. Every "
                                "error is {\"error\": {\"code\", \"message\", \"details\"}}."},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "Tokens have scope read or write (write implies "
                                                              "read)."}},
        },
        "security": read,
        "paths": {
            "/api/balance": {
                "get": {"operationId": "getBalance", "summary": "Current balance, 24h change and recent entries",
                        "parameters": [SESSION_ID],
                        "responses": {"200": _ok("BalanceResponse", "The balance"), **AUTH_ERRORS,
                                      **SESSION_ERRORS}},
                "post": {
                    "operationId": "changeBalance",
                    "summary": "Set the total (balance) or deposit/withdraw (amount); needs a write token",
                    "parameters": [SESSION_ID, _param(
                        "Idempotency-Key", "Retrying with the same key returns the first result and changes "
                                           "nothing. Scoped to the token that sends it.",
                        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY,
                         "pattern": "^[\\x21-\\x7e]+$"},
                        "header")],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/BalanceChangeRequest"}}}},
                    "responses": {
                        "201": {**_ok("BalanceChangeResponse", "The change was recorded (or replayed)", {
                            "Idempotent-Replayed": {"description": "true when this is the stored result of an "
                                                                   "earlier request with the same key",
                                                    "schema": {"type": "string", "enum": ["true"]}}}),
                                "links": _links(
                                    HistoryOfTheSession=("getBalanceHistory",
                                                         {"session_id": "$response.body#/session_id"}),
                                    BalanceOfTheSession=("getBalance", {"session_id": "$response.body#/session_id"}))},
                        "400": _error("Invalid JSON, bad parameter or header, or ambiguous session"),
                        **AUTH_ERRORS,
                        "404": _error("No such session, or no active session"),
                        "409": _error("The change would leave the available balance below zero"),
                        "413": _error("Body too large"),
                        "415": _error("Content-Type is not application/json"),
                        "422": _error("The body is not a valid change (details per field), or the "
                                      "Idempotency-Key was used for a different change"),
                    },
                },
            },
            "/api/balance/history": {"get": {
                "operationId": "getBalanceHistory", "summary": "Ledger entries, newest first (keyset pages)",
                "parameters": [SESSION_ID, LIMIT, _before(MAX_BIGINT_ID)],
                "responses": {"200": _ok("HistoryPage", "One page"), **AUTH_ERRORS, **SESSION_ERRORS}}},
            "/api/exposure": {"get": {
                "operationId": "getExposure",
                "summary": "Gross and net exposure now, per asset and total, and its history (newest first)",
                "parameters": [SESSION_ID, _param("limit", "Points of history per page.",
                                                  {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                                   "default": MAX_PAGE}),
                               _param("before", "Cursor from the previous page's next_cursor (older points).",
                                      {"type": "integer", "minimum": 1, "maximum": schemas.MAX_EPOCH_SECONDS})],
                "responses": {"200": _ok("ExposureResponse", "The exposure and one page of its history"),
                              **AUTH_ERRORS, **SESSION_ERRORS}}},
            "/api/positions": {"get": {
                "operationId": "getPositions", "summary": "Open positions with unrealised P&L at the last close",
                "parameters": [SESSION_ID],
                "responses": {"200": _ok("PositionsResponse", "Open positions"), **AUTH_ERRORS,
                              **SESSION_ERRORS}}},
            "/api/trades": {"get": {
                "operationId": "getTrades", "summary": "Closed trades, newest first (keyset pages)",
                "parameters": [SESSION_ID, LIMIT, _before(MAX_INT_ID)],
                "responses": {"200": _ok("TradesPage", "One page"), **AUTH_ERRORS, **SESSION_ERRORS}}},
            "/api/performance": {"get": {
                "operationId": "getPerformance",
                "summary": "Realised P&L, fees, win rate, averages and time-weighted contribution by strategy or "
                           "symbol over a market-time window [from, to)",
                "parameters": [SESSION_ID, *performance_parameters()],
                "responses": {"200": _ok("PerformanceResponse", "The attribution"), **AUTH_ERRORS,
                              "400": _error("Bad parameter (by, from, to; from must be before to), or several "
                                            "active sessions (details list the choices)"),
                              "404": _error("No such session, or no active session")}}},
            "/api/sessions": {"get": {
                "operationId": "getSessions", "summary": "All trading sessions",
                "parameters": [_param("status", "Only sessions with this status.",
                                      {"type": "string", "enum": ["active", "ended"]})],
                "responses": {"200": {**_ok("SessionsResponse", "Sessions"), "links": _links(
                                  BalanceOfTheFirstSession=("getBalance",
                                                            {"session_id": "$response.body#/sessions/0/session_id"}),
                                  TradesOfTheFirstSession=("getTrades",
                                                           {"session_id": "$response.body#/sessions/0/session_id"}))},
                              "400": _error("Bad parameter"),
                              **AUTH_ERRORS}}},
            "/api/health": {"get": {
                "operationId": "getHealth",
                "summary": "Readiness: database reachable, schema at head, age of the last tick (read token)",
                "responses": {"200": _ok("HealthResponse", "Healthy"), **AUTH_ERRORS,
                              "503": _ok("HealthResponse", "Database unreachable or schema not at head")}}},
            "/api/live": {"get": {
                "operationId": "getLive", "summary": "Liveness: answers without a token and never touches the "
                                                     "database (a ping does not wake a paused Aurora)",
                "security": [],
                "responses": {"200": {"description": "Alive", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"status": {"const": "alive"}}, "required": ["status"],
                    "additionalProperties": False}}}}}}},
            **fleet_paths(),
            "/api/me": {"get": {
                "operationId": "getMe", "summary": "The calling token's name and scope",
                "responses": {"200": _ok("MeResponse", "Who the token is"), **AUTH_ERRORS}}},
            "/api/openapi.json": {"get": {
                "operationId": "getOpenApi", "summary": "This document",
                "responses": {"200": {"description": "The OpenAPI document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                              **AUTH_ERRORS}}},
        },
    }
