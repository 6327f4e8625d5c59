"""HTTP for bots and deposit schedules (issue 14): ``GET/POST /api/bots``, ``PATCH /api/bots/{id}``,
``GET/POST /api/schedules``. Reading needs a read token, changing a write token; bad input is a 4xx JSON error
and changes nothing (the bot definition is checked by ``BotSpec`` before anything is written)."""

from __future__ import annotations

from chalice import Response

from chalicelib.api import schemas
from chalicelib.api.auth import Principal
from chalicelib.api.errors import ApiError, json_response
from chalicelib.api.handlers import ApiRequest, _json_body, _session_id, endpoint
from chalicelib.ids import MAX_INT_ID


def _fleet_errors(exc: Exception) -> ApiError:
    from chalicelib import fleet

    if isinstance(exc, (fleet.BotNotFound, fleet.ScheduleNotFound)):
        return ApiError(404, exc.code, str(exc))
    if isinstance(exc, fleet.DuplicateBot):
        return ApiError(409, exc.code, str(exc))
    if isinstance(exc, fleet.FleetError):
        return ApiError(422, exc.code, str(exc))
    from chalicelib.bots import BotDefinitionError

    if isinstance(exc, BotDefinitionError):
        return ApiError(422, "invalid_bot", str(exc))
    raise exc


@endpoint("read")
def get_bots(_request: ApiRequest, _: Principal | None) -> Response:
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine

    return json_response(schemas.BotsResponse(bots=fleet.list_bots(get_engine())).body())


@endpoint("write")
def post_bot(request: ApiRequest, principal: Principal | None) -> Response:
    assert principal is not None
    from chalicelib import fleet
    from chalicelib.bots import BotSpec
    from chalicelib.db.engine import get_engine
    from chalicelib.ledger import Actor

    body = schemas.parse_bot(_json_body(request))
    try:
        spec = BotSpec(strategy=body.strategy, symbol=body.symbol, timeframe=body.timeframe, exchange=body.exchange)
        view = fleet.add_bot(spec, body.initial_capital, actor=Actor(principal.name), engine=get_engine())
    except Exception as exc:
        raise _fleet_errors(exc) from None
    return json_response(view.body(), 201)


def _bot_id(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_INT_ID:
        raise ApiError(404, "bot_not_found", f"no bot {text[:20]!r}")
    return int(text)


def patch_bot(request: ApiRequest | None, bot_id: str) -> Response:
    """Pause (``{"status": "paused"}``: no more ticks, the account kept) or resume a bot."""

    @endpoint("write")
    def serve(req: ApiRequest, _: Principal | None) -> Response:
        from chalicelib import fleet
        from chalicelib.db.engine import get_engine

        ident = _bot_id(bot_id)
        body = schemas.parse_bot_patch(_json_body(req))
        try:
            view = fleet.set_bot_status(ident, body.status, engine=get_engine())
        except Exception as exc:
            raise _fleet_errors(exc) from None
        return json_response(view.body())

    return serve(request)


@endpoint("read")
def get_schedules(_request: ApiRequest, _: Principal | None) -> Response:
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine

    return json_response(schemas.SchedulesResponse(schedules=fleet.list_schedules(get_engine())).body())


@endpoint("write", ("session_id",))
def post_schedule(request: ApiRequest, principal: Principal | None) -> Response:
    assert principal is not None
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine
    from chalicelib.ledger import Actor

    body = schemas.parse_schedule(_json_body(request))
    session_id = body.session_id or _session_id(request)
    if body.starts_at is not None and body.starts_at.tzinfo is None:
        raise ApiError(422, "validation_failed", "starts_at must carry a time zone (e.g. 2026-12-01T00:00:00Z)",
                       [{"field": "starts_at", "message": "time zone required"}])
    try:
        view = fleet.add_schedule(body.amount, body.every, body.reason, actor=Actor(principal.name),
                                  session_id=session_id, starts_at=body.starts_at, engine=get_engine())
    except Exception as exc:
        raise _fleet_errors(exc) from None
    return json_response(view.body(), 201)
