"""The Chalice app: wiring only. Each route, the schedule and the migration function call one service in
``chalicelib``; no SQL and no business rules live here. Heavy modules (ccxt) are imported only on the tick path.
"""

from __future__ import annotations

from typing import Any

from chalice import Cron, Response

from chalicelib import logs
from chalicelib.api import handlers as api
from chalicelib.api.chalice_app import App

# configure_logs=False: powertools owns the "atb" logger (JSON in Lambda); Chalice would add a second, plain handler.
# App wraps every HTTP invocation in the logger's Lambda context (cold_start, function_name, correlation_id).
app = App(app_name="atb", configure_logs=False)

# --- HTTP API (issue 4) ----------------------------------------------------------------------------------------
# Auth, validation and error shapes live in chalicelib/api; every /api/* route but /api/live needs a bearer token.


@app.route("/api/balance", methods=["GET"], **api.route_kwargs())
def get_balance() -> Response:
    return api.get_balance(app.current_request)


@app.route("/api/balance", methods=["POST"], **api.route_kwargs())
def change_balance() -> Response:
    return api.post_balance(app.current_request)


@app.route("/api/balance/history", methods=["GET"], **api.route_kwargs())
def balance_history() -> Response:
    return api.get_history(app.current_request)


@app.route("/api/exposure", methods=["GET"], **api.route_kwargs())
def exposure() -> Response:
    return api.get_exposure(app.current_request)


@app.route("/api/positions", methods=["GET"], **api.route_kwargs())
def positions() -> Response:
    return api.get_positions(app.current_request)


@app.route("/api/trades", methods=["GET"], **api.route_kwargs())
def trades() -> Response:
    return api.get_trades(app.current_request)


@app.route("/api/performance", methods=["GET"], **api.route_kwargs())
def performance() -> Response:
    """Attribution by strategy or symbol over a market-time window (issue 13)."""
    from chalicelib.api import performance_handlers

    return performance_handlers.get_performance(app.current_request)


@app.route("/api/sessions", methods=["GET"], **api.route_kwargs())
def sessions() -> Response:
    return api.get_sessions(app.current_request)


@app.route("/api/health", methods=["GET"], **api.route_kwargs())
def health() -> Response:
    """Readiness (read token): database reachable and schema at head. Liveness without a token: /api/live."""
    return api.get_health(app.current_request)


@app.route("/api/openapi.json", methods=["GET"], **api.route_kwargs())
def openapi() -> Response:
    return api.get_openapi(app.current_request)


# --- Scheduled tick (issue 3) ----------------------------------------------------------------------------------
# One minute past every hour, just after the hourly candle closes. The engine (and ccxt) load only here.

@app.schedule(Cron("1", "*", "*", "*", "?", "*"), name="tick")
def tick(event: Any) -> dict[str, object]:
    """Apply every newly closed candle to each bot in ATB_BOTS, once, in one transaction per session."""
    return _scheduled_tick(event.to_dict(), event.context)


@logs.lambda_entry(logs.event_id)
def _scheduled_tick(event: dict[str, Any], context: Any) -> dict[str, object]:
    from chalicelib.bot.scheduled import run_scheduled_tick

    return run_scheduled_tick(event_time=event.get("time"), request_id=getattr(context, "aws_request_id", None))


# --- Fan-out worker (issue 14) ---------------------------------------------------------------------------------
# One bot per message (batch size 1: Chalice 1.34 cannot declare ReportBatchItemFailures, so a failed tick fails
# its own message alone). The queue named here is what `chalice deploy` wires; `scripts/package.py` merges
# infra/app-resources.json, which creates the queue, its dead-letter queue and points this mapping at them.


@app.on_sqs_message(queue="atb-ticks", batch_size=1, name="worker")
def worker(event: object) -> dict[str, object]:
    """Tick the one bot named by the message; raising returns the message to the queue (then the DLQ)."""
    from chalicelib.bot.scheduled import run_worker

    records = [{"body": record.body} for record in event]  # type: ignore[attr-defined]
    return {"bots": run_worker(records)}


# --- Bots, deposit schedules, liveness (issue 14) ---------------------------------------------------------------


@app.route("/api/bots", methods=["GET"], **api.route_kwargs())
def list_bots() -> Response:
    from chalicelib.api import fleet_handlers

    return fleet_handlers.get_bots(app.current_request)


@app.route("/api/bots", methods=["POST"], **api.route_kwargs())
def add_bot() -> Response:
    from chalicelib.api import fleet_handlers

    return fleet_handlers.post_bot(app.current_request)


@app.route("/api/bots/{bot_id}", methods=["PATCH"], **api.route_kwargs())
def change_bot(bot_id: str) -> Response:
    from chalicelib.api import fleet_handlers

    return fleet_handlers.patch_bot(app.current_request, bot_id)


@app.route("/api/schedules", methods=["GET"], **api.route_kwargs())
def list_schedules() -> Response:
    from chalicelib.api import fleet_handlers

    return fleet_handlers.get_schedules(app.current_request)


@app.route("/api/schedules", methods=["POST"], **api.route_kwargs())
def add_schedule() -> Response:
    from chalicelib.api import fleet_handlers

    return fleet_handlers.post_schedule(app.current_request)


@app.route("/api/live", methods=["GET"], **api.route_kwargs())
def live() -> Response:
    """Liveness: no token, never touches the database (pinging it never wakes a paused Aurora)."""
    from chalicelib.api.errors import json_response

    return json_response({"status": "alive"})


# --- Migrations on deploy (issue 5) ----------------------------------------------------------------------------
# For pipelines with no network path to the database: `chalice invoke --name migrate` runs Alembic inside the VPC.


@app.lambda_function(name="migrate")
@logs.lambda_entry(logs.event_id)
def migrate(event: dict[str, object], context: object) -> dict[str, str | None]:
    """Bring the schema to head; idempotent. Returns the revision before, after, and the code's head."""
    from chalicelib.db import migrate as migrations

    return migrations.run_migrate_function()


# --- Dashboard (issue 6) ---------------------------------------------------------------------------------------
# One static page and its bundled assets (chalicelib/static); no auth here: the page asks for a token and calls
# /api/* with it. /api/me tells the page the token's scope.


@app.route("/", methods=["GET"])
def dashboard_page() -> Response:
    from chalicelib import dashboard

    return dashboard.page()


@app.route("/static/{name}", methods=["GET"])
def dashboard_asset(name: str) -> Response:
    from chalicelib import dashboard

    return dashboard.asset(name)


@app.route("/api/me", methods=["GET"], **api.route_kwargs())
def whoami() -> Response:
    return api.get_me(app.current_request)
