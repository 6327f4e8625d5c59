"""``/api/bots`` and ``/api/schedules`` (issue 14): read scope lists, write scope changes; bad input is a 4xx JSON
error and changes nothing; ``/api/live`` answers without a token and without the database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_helpers import READ_TOKEN, WRITE_TOKEN, StartSession, auth, body, post_json
from chalice.test import Client
from sqlalchemy import Engine

from chalicelib import fleet


def _json(response: Any) -> Any:
    return json.loads(response.body)


def test_a_bot_is_added_listed_paused_and_resumed_through_the_api(engine: Engine, client: Client) -> None:
    created = client.http.post("/api/bots", headers=post_json(), body=body(
        {"strategy": "ml_basic", "symbol": "btc/usdt", "timeframe": "4h", "exchange": "binanceus",
         "initial_capital": "2500.50"}))
    assert created.status_code == 201, created.body
    bot = _json(created)
    assert (bot["symbol"], bot["timeframe"], bot["exchange"], bot["status"]) == ("BTCUSDT", "4h", "binanceus", "active")
    assert bot["initial_capital"] == 2500.5 and bot["created_by"] == "owner"
    listed = client.http.get("/api/bots", headers=auth(READ_TOKEN))
    assert [b["bot_id"] for b in _json(listed)["bots"]] == [bot["bot_id"]]
    paused = client.http.patch(f"/api/bots/{bot['bot_id']}", headers=post_json(), body=body({"status": "paused"}))
    assert paused.status_code == 200 and _json(paused)["status"] == "paused"
    resumed = client.http.patch(f"/api/bots/{bot['bot_id']}", headers=post_json(), body=body({"status": "active"}))
    assert _json(resumed)["status"] == "active"


def test_a_bot_of_several_pairs_is_one_bot_with_one_wallet(engine: Engine, client: Client) -> None:
    created = client.http.post("/api/bots", headers=post_json(), body=body(
        {"strategy": "ml_basic", "symbol": "eth/usdt, BTCUSDT", "exchange": "replay", "initial_capital": "1000"}))
    assert created.status_code == 201, created.body
    assert _json(created)["symbol"] == "BTCUSDT,ETHUSDT"
    again = client.http.post("/api/bots", headers=post_json(), body=body(
        {"strategy": "ma_crossover", "symbol": "BTCUSDT+ETHUSDT", "exchange": "replay"}))
    assert again.status_code == 409, again.body  # the same pairs in another spelling are the same bot
    priced = client.http.post("/api/bots", headers=post_json(), body=body(
        {"strategy": "ml_basic", "symbol": "ETHBTC,BTCUSDT", "exchange": "replay"}))
    assert priced.status_code == 201 and _json(priced)["symbol"] == "BTCUSDT,ETHBTC"
    assert [b.symbol for b in fleet.list_bots(engine)] == ["BTCUSDT,ETHUSDT", "BTCUSDT,ETHBTC"]


BAD_BOTS = [
    ({"strategy": "nosuch", "symbol": "BTCUSDT"}, 422, "unknown strategy"),
    ({"strategy": "ml_basic", "symbol": "ETHBTC"}, 422, "not USD"),
    ({"strategy": "ml_basic", "symbol": "BTCUSDT", "timeframe": "7x"}, 422, "unsupported timeframe"),
    ({"strategy": "ml_basic", "symbol": "BTCUSDT", "exchange": "nosuchexchange"}, 422, "unknown exchange"),
    ({"strategy": "ml_basic", "symbol": "BTCUSDT", "initial_capital": 0}, 422, "greater than zero"),
    ({"strategy": "ml_basic", "symbol": "BTCUSDT", "initial_capital": 1.123456789}, 422, "validation"),
    ({"strategy": "ml_basic"}, 422, "validation"),
    ({"strategy": "ml_basic", "symbol": "BTCUSDT", "mode": "live"}, 422, "validation"),
]


@pytest.mark.parametrize(("payload", "status", "says"), BAD_BOTS)
def test_a_bad_bot_is_refused_with_a_json_error_and_nothing_is_added(
    engine: Engine, client: Client, payload: dict[str, Any], status: int, says: str,
) -> None:
    response = client.http.post("/api/bots", headers=post_json(), body=body(payload))
    assert response.status_code == status, response.body
    error = _json(response)["error"]
    assert says in error["message"] or says in error["code"], error
    assert fleet.list_bots(engine) == []


def test_changing_bots_needs_the_write_scope_and_unknown_or_duplicate_bots_are_refused(
    engine: Engine, client: Client,
) -> None:
    payload = body({"strategy": "ml_basic", "symbol": "BTCUSDT"})
    assert client.http.post("/api/bots", headers=post_json(READ_TOKEN), body=payload).status_code == 403
    assert client.http.post("/api/bots", body=payload, headers={"Content-Type": "application/json"}).status_code == 401
    assert client.http.post("/api/bots", headers=post_json(), body=payload).status_code == 201
    duplicate = client.http.post("/api/bots", headers=post_json(), body=body({"strategy": "ma_crossover",
                                                                               "symbol": "BTC/USDT"}))
    assert duplicate.status_code == 409 and _json(duplicate)["error"]["code"] == "bot_exists"
    assert client.http.patch("/api/bots/1", headers=post_json(READ_TOKEN),
                             body=body({"status": "paused"})).status_code == 403
    assert client.http.patch("/api/bots/99", headers=post_json(), body=body({"status": "paused"})).status_code == 404
    assert client.http.patch("/api/bots/x", headers=post_json(), body=body({"status": "paused"})).status_code == 404
    assert client.http.patch("/api/bots/1", headers=post_json(), body=body({"status": "gone"})).status_code == 422
    [bot] = fleet.list_bots(engine)
    assert bot.status == "active" and bot.strategy == "ml_basic"


def test_a_deposit_schedule_is_created_and_listed_with_its_next_deposit(
    engine: Engine, client: Client, start_session: StartSession,
) -> None:
    session_id = start_session("1000")
    created = client.http.post("/api/schedules", headers=post_json(), body=body(
        {"amount": "100", "every": "1w", "reason": "weekly savings", "session_id": session_id,
         "starts_at": "2030-01-01T00:00:00Z"}))
    assert created.status_code == 201, created.body
    view = _json(created)
    assert view["next_deposit_at"] == "2030-01-01T00:00:00Z" and view["created_by"] == "owner"
    listed = _json(client.http.get("/api/schedules", headers=auth(READ_TOKEN)))["schedules"]
    assert [s["schedule_id"] for s in listed] == [view["schedule_id"]]
    for bad in ({"amount": "-5", "every": "1w", "reason": "x"}, {"amount": "5", "every": "1y", "reason": "x"},
                {"amount": "5", "every": "1w", "reason": " "}, {"amount": "5", "every": "1w", "reason": "x",
                                                                  "starts_at": "2030-01-01T00:00:00"}):
        refused = client.http.post("/api/schedules", headers=post_json(), body=body({**bad, "session_id": session_id}))
        assert 400 <= refused.status_code < 500 and "error" in _json(refused), (bad, refused.body)
    assert client.http.post("/api/schedules", headers=post_json(READ_TOKEN), body=body(
        {"amount": "5", "every": "1w", "reason": "x"})).status_code == 403
    assert len(fleet.list_schedules(engine)) == 1


def test_liveness_needs_no_token_and_no_database(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+pg8000://nobody@127.0.0.1:1/none")
    response = client.http.get("/api/live")
    assert response.status_code == 200 and _json(response) == {"status": "alive"}
    assert WRITE_TOKEN not in response.body.decode()
