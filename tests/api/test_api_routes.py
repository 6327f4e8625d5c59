"""Every route through chalice.test.Client, on SQLite and on real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import ledger_testing
import pytest
from api_helpers import READ_TOKEN, WRITE_TOKEN, auth, body, ledger_rows, post_json
from chalice.test import Client
from sqlalchemy import Engine

from chalicelib import ledger
from chalicelib.api import schemas
from chalicelib.db.models import Position, Trade
from chalicelib.db.types import utcnow
from chalicelib.db.uow import write_transaction
from chalicelib.jsonutil import loads_exact

ROUTES = ["/api/balance", "/api/balance/history", "/api/exposure", "/api/positions", "/api/trades", "/api/sessions",
          "/api/openapi.json", "/api/performance"]


def test_every_read_route_answers_a_read_token_and_matches_its_documented_schema(
        client: Client, start_session, engine: Engine) -> None:
    session_id = start_session("5000.12345678")
    contracts = {"/api/balance": schemas.BalanceResponse, "/api/balance/history": schemas.HistoryPage,
                 "/api/exposure": schemas.ExposureResponse,
                 "/api/positions": schemas.PositionsResponse, "/api/trades": schemas.TradesPage,
                 "/api/sessions": schemas.SessionsResponse, "/api/performance": schemas.PerformanceResponse}
    for path in ROUTES:
        response = client.http.get(path, headers=auth(READ_TOKEN))
        assert response.status_code == 200, (path, response.body)
        assert response.headers["Content-Type"] == "application/json"
        if path in contracts:
            contracts[path].model_validate(loads_exact(response.body))
    balance = loads_exact(client.http.get("/api/balance", headers=auth(READ_TOKEN)).body)
    assert balance["session_id"] == session_id
    assert balance["current_balance"] == Decimal("5000.12345678")
    assert balance["equity"] == Decimal("5000.12345678")


def test_money_in_responses_is_written_from_the_decimal_text(client: Client, start_session) -> None:
    start_session("5000.12345678")
    text = client.http.get("/api/balance", headers=auth()).body.decode()
    assert '"current_balance": 5000.12345678' in text
    response = client.http.post("/api/balance", headers=post_json(),
                                body=b'{"amount": 999999999.87654321, "reason": "exact deposit"}')
    assert response.status_code == 201, response.body
    text = response.body.decode()
    assert '"amount": 999999999.87654321' in text
    assert '"current_balance": 1000004999.99999999' in text


def test_a_deposit_as_a_number_with_more_precision_than_a_float_is_kept_exactly(client: Client, start_session) -> None:
    start_session("0")
    response = client.http.post("/api/balance", headers=post_json(),
                                body=b'{"balance": 999999999999.12345678, "reason": "big"}')
    assert response.status_code == 201, response.body
    assert '"current_balance": 999999999999.12345678' in response.body.decode()


def test_health_is_readiness_behind_a_read_token_and_shows_no_private_data(client: Client, start_session) -> None:
    start_session("1234.5")
    assert client.http.get("/api/health").status_code == 401  # anonymous pings never reach the database
    response = client.http.get("/api/health", headers=auth(READ_TOKEN))
    assert response.status_code == 200
    report = schemas.HealthResponse.model_validate(loads_exact(response.body))
    assert report.status == "ok" and report.database == "reachable" and report.schema_at_head
    assert "1234" not in response.body.decode()


def test_health_reports_the_age_of_the_last_tick(client: Client, start_session, engine: Engine) -> None:
    session_id = start_session()
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, session_id)
        assert session is not None
        session.last_tick_at = utcnow() - timedelta(minutes=5)
    report = loads_exact(client.http.get("/api/health", headers=auth(READ_TOKEN)).body)
    assert 290 <= report["last_tick_age_seconds"] <= 400


def test_health_is_503_when_the_database_is_down(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+pg8000://postgres@127.0.0.1:1/nowhere")
    response = client.http.get("/api/health", headers=auth(READ_TOKEN))
    assert response.status_code == 503
    assert loads_exact(response.body)["database"] == "unreachable"
    assert "127.0.0.1" not in response.body.decode()


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_but_live_refuses_a_missing_or_wrong_token(client: Client, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {READ_TOKEN}"},
                    {"Authorization": "Bearer "}, {"Authorization": f"Bearer {READ_TOKEN}x"}):
        response = client.http.get(path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert loads_exact(response.body)["error"]["code"] == "unauthorized"


def test_a_read_token_cannot_change_the_balance(client: Client, start_session, engine: Engine) -> None:
    start_session()
    before = ledger_rows(engine)
    response = client.http.post("/api/balance", headers=post_json(READ_TOKEN),
                                body=body({"amount": 5, "reason": "sneaky"}))
    assert response.status_code == 403
    assert loads_exact(response.body)["error"]["code"] == "forbidden"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert ledger_rows(engine) == before


def test_a_write_token_can_read(client: Client, start_session) -> None:
    start_session()
    assert client.http.get("/api/balance", headers=auth(WRITE_TOKEN)).status_code == 200


def test_set_deposit_withdraw_are_recorded_with_the_token_name_and_the_label(
        client: Client, start_session) -> None:
    start_session("1000")
    r = client.http.post("/api/balance", headers=post_json(),
                         body=body({"balance": 5000, "reason": "Capital increase", "updated_by": "trader"}))
    assert r.status_code == 201, r.body
    entry = loads_exact(r.body)["entry"]
    assert entry["kind"] == "manual_set" and entry["amount"] == Decimal(4000)
    assert entry["updated_by"] == "owner" and entry["updated_by_label"] == "trader"
    schemas.BalanceChangeResponse.model_validate(loads_exact(r.body))
    r = client.http.post("/api/balance", headers=post_json(), body=body({"amount": 500, "reason": "top up"}))
    assert loads_exact(r.body)["entry"]["kind"] == "deposit"
    r = client.http.post("/api/balance", headers=post_json(),
                         body=b'{"amount": "-250.5", "reason": "take profit home"}')
    assert r.status_code == 201
    result = loads_exact(r.body)
    assert result["entry"]["kind"] == "withdrawal" and result["current_balance"] == Decimal("5249.5")
    summary = loads_exact(client.http.get("/api/balance", headers=auth()).body)
    assert summary["current_balance"] == Decimal("5249.5")
    assert summary["last_update_reason"] == "take profit home"
    assert [e["kind"] for e in summary["recent_history"]][:3] == ["withdrawal", "deposit", "manual_set"]


def test_no_session_gives_404_and_several_give_400_listing_the_choices(client: Client, start_session) -> None:
    r = client.http.get("/api/balance", headers=auth())
    assert r.status_code == 404 and loads_exact(r.body)["error"]["code"] == "no_active_session"
    first, second = start_session("100"), start_session("200")
    for path in ("/api/balance", "/api/balance/history", "/api/positions", "/api/trades"):
        r = client.http.get(path, headers=auth())
        assert r.status_code == 400, path
        error = loads_exact(r.body)["error"]
        assert error["code"] == "session_ambiguous"
        assert [c["session_id"] for c in error["details"][0]["choices"]] == [first, second]
    r = client.http.post("/api/balance", headers=post_json(), body=body({"amount": 1, "reason": "which?"}))
    assert r.status_code == 400
    r = client.http.get(f"/api/balance?session_id={second}", headers=auth())
    assert r.status_code == 200 and loads_exact(r.body)["current_balance"] == Decimal(200)
    r = client.http.post(f"/api/balance?session_id={first}", headers=post_json(),
                         body=body({"amount": 1, "reason": "this one"}))
    assert r.status_code == 201 and loads_exact(r.body)["current_balance"] == Decimal(101)
    assert client.http.get("/api/balance?session_id=999", headers=auth()).status_code == 404
    for bad in ("abc", "0", "-1", "1.5", "9" * 40):
        r = client.http.get(f"/api/balance?session_id={bad}", headers=auth())
        assert r.status_code == 400, bad
        assert loads_exact(r.body)["error"]["code"] == "invalid_parameter"
    sessions = loads_exact(client.http.get("/api/sessions", headers=auth()).body)["sessions"]
    assert [s["session_id"] for s in sessions] == [first, second]
    assert loads_exact(client.http.get("/api/sessions?status=ended", headers=auth()).body)["sessions"] == []
    assert client.http.get("/api/sessions?status=zombie", headers=auth()).status_code == 400


def test_history_pages_cover_every_entry_once_newest_first(client: Client, start_session, engine: Engine) -> None:
    session_id = start_session("100")
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, session_id)
        assert session is not None
        for i in range(136):
            ledger.record_deposit(db, session, Decimal(i + 1), reason=f"d{i}", actor=ledger.Actor("t"))
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = "/api/balance/history?limit=25" + (f"&before={cursor}" if cursor else "")
        page = loads_exact(client.http.get(query, headers=auth(READ_TOKEN)).body)
        assert len(page["entries"]) <= 25
        seen.extend(e["id"] for e in page["entries"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 6
    assert len(seen) == 137 == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    default = loads_exact(client.http.get("/api/balance/history", headers=auth()).body)
    assert len(default["entries"]) == 50 and default["limit"] == 50
    assert len(loads_exact(client.http.get("/api/balance/history?limit=500", headers=auth()).body)["entries"]) == 137
    for bad in ("0", "501", "-5", "x", "1e2"):
        r = client.http.get(f"/api/balance/history?limit={bad}", headers=auth())
        assert r.status_code == 400, bad
    assert client.http.get("/api/balance/history?before=abc", headers=auth()).status_code == 400


def test_idempotent_retries_return_the_first_result_and_change_nothing(
        client: Client, start_session, engine: Engine) -> None:
    start_session("1000")
    headers = post_json(**{"Idempotency-Key": "deposit-2024-06-01"})
    payload = body({"amount": "250.25", "reason": "June deposit"})
    first = client.http.post("/api/balance", headers=headers, body=payload)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    after_first = ledger_rows(engine)
    client.http.post("/api/balance", headers=post_json(), body=body({"amount": 1, "reason": "unrelated"}))
    after_other = ledger_rows(engine)
    for _ in range(3):
        retry = client.http.post("/api/balance", headers=headers, body=payload)
        assert retry.status_code == 201
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.body == first.body
    assert ledger_rows(engine) == after_other != after_first
    assert loads_exact(client.http.get("/api/balance", headers=auth()).body)["current_balance"] == Decimal("1251.25")
    reused = client.http.post("/api/balance", headers=headers, body=body({"amount": 999, "reason": "June deposit"}))
    assert reused.status_code == 422
    assert loads_exact(reused.body)["error"]["code"] == "idempotency_key_reused"
    for bad_key in ("", "x" * 101, "has space", "ünïcode"):
        r = client.http.post("/api/balance", headers=post_json(**{"Idempotency-Key": bad_key}), body=payload)
        assert r.status_code == 400, bad_key
    assert ledger_rows(engine) == after_other


def test_setting_the_total_below_what_open_positions_hold_is_409(
        client: Client, start_session, engine: Engine) -> None:
    session_id = start_session("10000")
    with write_transaction(engine) as db:
        session = ledger.lock_session(db, session_id)
        assert session is not None
        position = Position(session_id=session_id, symbol="BTCUSDT", side="long", status="open",
                            entry_price=Decimal("60000"), quantity=Decimal("0.1"), cost=Decimal("6000"),
                            stop_loss=Decimal("57000"), take_profit=Decimal("66000"), entry_time=utcnow(),
                            fees=Decimal("6"))
        db.add(position)
        db.flush()
        ledger_testing.record_position_opened(db, session, cost=Decimal("6000"), fee=Decimal("6"),
                                      reference=f"position:{position.id}:open", held={"BTC": Decimal("0.1")})
        # A candle closes at 61,234.50: the tick marks the open position there.
        book = ledger.Batch(db, session)
        marks = ledger_testing.marks_at(session, "61234.5")
        book.mark(marks=marks, equity=ledger.equity_of(session, [position], marks), market_time=utcnow())
        book.write()
    before = ledger_rows(engine)
    r = client.http.post("/api/balance", headers=post_json(), body=body({"balance": 5000, "reason": "too low"}))
    assert r.status_code == 409
    error = loads_exact(r.body)["error"]
    assert error["code"] == "insufficient_funds" and "held by open positions" in error["message"]
    r = client.http.post("/api/balance", headers=post_json(), body=body({"amount": -4000, "reason": "too much"}))
    assert r.status_code == 409
    assert ledger_rows(engine) == before
    r = client.http.post("/api/balance", headers=post_json(), body=body({"balance": 6000, "reason": "all in"}))
    assert r.status_code == 201 and loads_exact(r.body)["available_balance"] == Decimal(0)

    positions = loads_exact(client.http.get("/api/positions", headers=auth(READ_TOKEN)).body)
    schemas.PositionsResponse.model_validate(positions)
    assert positions["last_close"] == Decimal("61234.5")
    (p,) = positions["positions"]
    assert p["unrealized_pnl"] == Decimal("123.45") and p["stop_loss"] == Decimal(57000)
    summary = loads_exact(client.http.get("/api/balance", headers=auth()).body)
    assert summary["reserved_balance"] == Decimal(6000) and summary["equity"] == Decimal("6123.45")
    assert summary["asset_balances"]["BTC"] == Decimal("0.1")


def test_trades_are_paginated_newest_first(client: Client, start_session, engine: Engine) -> None:
    session_id = start_session()
    now = utcnow()
    with write_transaction(engine) as db:
        for i in range(7):
            db.add(Trade(session_id=session_id, symbol="BTCUSDT", side="long", entry_price=Decimal("100"),
                         exit_price=Decimal("101.5"), quantity=Decimal("0.5"), entry_time=now, exit_time=now,
                         realized_pnl=Decimal("0.75"), fees=Decimal("0.1"), exit_reason=f"r{i}", market_time=now,
                         recorded_at=now))
    ids: list[int] = []
    cursor = None
    while True:
        page = loads_exact(client.http.get("/api/trades?limit=3" + (f"&before={cursor}" if cursor else ""),
                                           headers=auth()).body)
        schemas.TradesPage.model_validate(page)
        ids += [t["id"] for t in page["trades"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(ids) == 7 == len(set(ids)) and ids == sorted(ids, reverse=True)


def test_unknown_routes_and_methods_are_never_200(client: Client) -> None:
    assert client.http.get("/api/nope", headers=auth()).status_code >= 400
    assert client.http.delete("/api/balance", headers=auth()).status_code == 405
    assert client.http.put("/api/balance", headers=auth()).status_code == 405
    assert client.http.post("/api/sessions", headers=auth()).status_code == 405


def test_an_unexpected_error_is_a_500_in_the_error_shape_without_internals(
        client: Client, start_session, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.api import service

    def explode(*_args: object) -> None:
        raise RuntimeError("secret internal detail /var/task")

    monkeypatch.setattr(service, "balance", explode)
    r = client.http.get("/api/balance", headers=auth())
    assert r.status_code == 500
    assert loads_exact(r.body)["error"]["code"] == "internal_error"
    assert "secret" not in r.body.decode()


def test_the_openapi_document_is_generated_from_the_models(client: Client) -> None:
    doc = loads_exact(client.http.get("/api/openapi.json", headers=auth(READ_TOKEN)).body)
    assert doc["openapi"].startswith("3.")
    request = doc["components"]["schemas"]["BalanceChangeRequest"]
    assert set(doc["paths"]) == {*ROUTES, "/api/health", "/api/me", "/api/live", "/api/bots", "/api/bots/{bot_id}",
                                 "/api/schedules"}
    from app import app

    assert set(doc["paths"]) == {path for path in app.routes if path.startswith("/api/")}  # every route
    assert doc["paths"]["/api/trades"]["get"]["parameters"][2]["schema"] == {
        "type": "integer", "minimum": 1, "maximum": 2**31 - 1}  # what the server accepts (before=0 is refused)
    assert {"required": ["balance"], "not": {"required": ["amount"]}} in request["oneOf"]
    assert request["additionalProperties"] is False
    assert set(request["properties"]) == {"balance", "amount", "reason", "updated_by"}
    assert doc["paths"]["/api/live"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/api/health"]["get"]  # the document's default: a bearer token
    assert client.http.get("/api/openapi.json").status_code == 401


def test_the_bots_and_schedules_answers_are_documented_by_the_models_that_build_them(client: Client) -> None:
    doc = loads_exact(client.http.get("/api/openapi.json", headers=auth(READ_TOKEN)).body)

    def answer(path: str, method: str, status: str) -> str:
        ref: str = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[-1]

    assert answer("/api/bots", "get", "200") == "BotsResponse"
    assert answer("/api/bots", "post", "201") == answer("/api/bots/{bot_id}", "patch", "200") == "BotOut"
    assert answer("/api/schedules", "get", "200") == "SchedulesResponse"
    assert answer("/api/schedules", "post", "201") == "ScheduleOut"
    bot = doc["components"]["schemas"]["BotOut"]
    assert bot["additionalProperties"] is False and bot["properties"]["status"]["enum"] == ["active", "paused"]
    assert bot["properties"]["initial_capital"]["type"] == "number"  # money: an exact JSON number


def test_every_api_response_success_or_error_says_cache_control_no_store(client: Client, start_session) -> None:
    start_session()
    for path in (*ROUTES, "/api/health", "/api/me"):
        for headers in (auth(READ_TOKEN), {}, {"Authorization": "Bearer wrong"}):
            response = client.http.get(path, headers=headers)
            assert response.headers.get("Cache-Control") == "no-store", (path, response.status_code)
    refused = client.http.post("/api/balance", headers=auth(READ_TOKEN), body=b"{}")
    assert refused.status_code == 403 and refused.headers["Cache-Control"] == "no-store"


# --- one wallet, two pairs: the breakdown and the exposure (issue 13) ------------------------------------------


def two_pair_account(engine: Engine) -> tuple[int, Any]:
    """A BTCUSDT+ETHUSDT account worked by hand: 10,000 USD in; 0.01 BTC bought at 58,000 (cost 580, fee 0.58) and
    0.5 ETH at 2,900 (cost 1,450, fee 1.45), so cash = 10,000 − 580 − 0.58 − 1,450 − 1.45 = 7,967.97; then BTCUSDT
    closes at 60,000 and ETHUSDT at 3,000. Four tick rows at two candle times (one per pair each) and one from before
    exposure was recorded. Returns the session id and the newest candle's open time."""
    from chalicelib.db.models import TickLog

    now = utcnow().replace(minute=0, second=0, microsecond=0)
    with write_transaction(engine) as db:
        s = ledger.start_session(db, strategy="ml_basic", symbol="BTCUSDT,ETHUSDT", timeframe="1h",
                                 exchange="binance", mode="paper", initial_balance=Decimal(10000),
                                 now=now - timedelta(hours=6))
        sid = s.id
    with write_transaction(engine) as db:
        s = ledger.lock_session(db, sid)
        assert s is not None
        newest = now - timedelta(hours=1)
        ledger_testing.hold_btc_and_eth(db, s, opened_at=now - timedelta(hours=4), marked_at=newest, market_time=now)
        for hours, symbol, exposure, equity in ((4, "BTCUSDT", None, "10000"),  # written before 0005: no exposure
                                                (3, "BTCUSDT", "580", "9999.42"), (3, "ETHUSDT", "2030", "10065"),
                                                (2, "BTCUSDT", "2090", "10060"), (2, "ETHUSDT", "2100", "10067.97")):
            at = now - timedelta(hours=hours)
            db.add(TickLog(session_id=s.id, symbol=symbol, candle_time=at, close_price=Decimal(1), decision="hold",
                           processed_at=now, market_time=at + timedelta(hours=1), equity=Decimal(equity),
                           exposure=None if exposure is None else Decimal(exposure)))
            db.flush()  # ids in the order the tick writes them: BTC then ETH within a candle time
        return s.id, newest


def test_the_balance_values_every_asset_and_reports_exposure_worked_by_hand(client: Client, engine: Engine) -> None:
    session_id, newest = two_pair_account(engine)
    response = client.http.get(f"/api/balance?session_id={session_id}", headers=auth(READ_TOKEN))
    assert response.status_code == 200, response.body
    b = loads_exact(response.body)
    schemas.BalanceResponse.model_validate(b)
    assert b["symbols"] == ["BTCUSDT", "ETHUSDT"] and b["symbol"] == "BTCUSDT,ETHUSDT"
    assert b["available_balance"] == Decimal("7967.97")
    assert b["equity"] == Decimal("10067.97")  # 7,967.97 + 0.01 × 60,000 + 0.5 × 3,000
    assert b["unrealized_pnl"] == Decimal(70)  # (600 − 580) + (1,500 − 1,450)
    # shares of 10,067.97 to 6 places: 7,967.97 → 0.791418, 600 → 0.059595, 1,500 → 0.148987, 2,100 → 0.208582
    assert [(a["asset"], a["quantity"], a["price"], a["value"], a["share_of_equity"]) for a in b["assets"]] == [
        ("USD", Decimal("7967.97"), Decimal(1), Decimal("7967.97"), Decimal("0.791418")),
        ("BTC", Decimal("0.01"), Decimal(60000), Decimal(600), Decimal("0.059595")),
        ("ETH", Decimal("0.5"), Decimal(3000), Decimal(1500), Decimal("0.148987")),
    ]
    assert sum(a["value"] for a in b["assets"]) == b["equity"]
    assert [a["priced_as"] for a in b["assets"]] == [
        "cash, USD", "BTCUSDT close; USDT counted 1:1 as USD", "ETHUSDT close; USDT counted 1:1 as USD"]
    exposure = b["exposure"]
    assert [(e["asset"], e["gross"], e["net"], e["gross_share"], e["net_share"]) for e in exposure["assets"]] == [
        ("BTC", Decimal(600), Decimal(600), Decimal("0.059595"), Decimal("0.059595")),
        ("ETH", Decimal(1500), Decimal(1500), Decimal("0.148987"), Decimal("0.148987")),
    ]
    total = exposure["total"]
    assert (total["asset"], total["gross"], total["net"], total["gross_share"]) == (
        "total", Decimal(2100), Decimal(2100), Decimal("0.208582"))
    assert [(m["symbol"], m["close"], m["priced_as"]) for m in b["marks"]] == [
        ("BTCUSDT", Decimal(60000), "BTCUSDT close; USDT counted 1:1 as USD"),
        ("ETHUSDT", Decimal(3000), "ETHUSDT close; USDT counted 1:1 as USD")]
    assert all(m["candle_time"] == newest.isoformat().replace("+00:00", "Z") for m in b["marks"])
    assert b["asset_balances"]["BTC"] == Decimal("0.01") and b["asset_balances"]["ETH"] == Decimal("0.5")

    positions = loads_exact(client.http.get(f"/api/positions?session_id={session_id}", headers=auth()).body)
    assert positions["last_close"] is None  # two pairs: no one account close; each position carries its own
    assert [(p["symbol"], p["last_close"], p["unrealized_pnl"]) for p in positions["positions"]] == [
        ("BTCUSDT", Decimal(60000), Decimal(20)), ("ETHUSDT", Decimal(3000), Decimal(50))]


def test_a_new_account_has_only_cash_and_no_exposure(client: Client, start_session) -> None:
    start_session("2500")
    b = loads_exact(client.http.get("/api/balance", headers=auth()).body)
    assert [(a["asset"], a["value"], a["share_of_equity"]) for a in b["assets"]] == [("USD", Decimal(2500), 1)]
    assert b["exposure"] == {"assets": [], "total": {"asset": "total", "gross": 0, "net": 0, "gross_share": 0,
                                                     "net_share": 0}}
    assert b["marks"] == [] and b["symbols"] == ["BTCUSDT"]
    e = loads_exact(client.http.get("/api/exposure", headers=auth()).body)
    assert e["history"] == [] and e["next_cursor"] is None and e["exposure"] == b["exposure"]


def test_exposure_history_takes_the_last_row_of_each_market_time_newest_first_in_pages(
        client: Client, engine: Engine) -> None:
    session_id, newest = two_pair_account(engine)
    response = client.http.get(f"/api/exposure?session_id={session_id}", headers=auth(READ_TOKEN))
    assert response.status_code == 200, response.body
    e = loads_exact(response.body)
    schemas.ExposureResponse.model_validate(e)
    assert e["exposure"] == loads_exact(client.http.get(f"/api/balance?session_id={session_id}",
                                                        headers=auth()).body)["exposure"]
    assert e["equity"] == Decimal("10067.97") and e["symbols"] == ["BTCUSDT", "ETHUSDT"]
    # two market times with exposure (the row from before 0005 has none); of each, the ETH row written last
    assert [(p["equity"], p["gross_exposure"], p["gross_share"]) for p in e["history"]] == [
        (Decimal("10067.97"), Decimal(2100), Decimal("0.208582")),  # 2,100 / 10,067.97
        (Decimal(10065), Decimal(2030), Decimal("0.201689")),  # 2,030 / 10,065
    ]
    assert e["history"][0]["market_time"] == newest.isoformat().replace("+00:00", "Z")
    assert e["next_cursor"] is None and e["limit"] == 500

    first = loads_exact(client.http.get(f"/api/exposure?session_id={session_id}&limit=1", headers=auth()).body)
    assert [p["gross_exposure"] for p in first["history"]] == [Decimal(2100)]
    cursor = first["next_cursor"]
    assert cursor is not None
    second = loads_exact(client.http.get(f"/api/exposure?session_id={session_id}&limit=1&before={cursor}",
                                         headers=auth()).body)
    assert [p["gross_exposure"] for p in second["history"]] == [Decimal(2030)] and second["next_cursor"] is None
    for bad in ("limit=0", "limit=501", "before=x", "before=0", "limit=", "sesion_id=1"):
        r = client.http.get(f"/api/exposure?{bad}", headers=auth())
        assert r.status_code == 400, bad
        assert loads_exact(r.body)["error"]["code"] == "invalid_parameter"
    assert client.http.get("/api/exposure?session_id=999", headers=auth()).status_code == 404
    assert client.http.get("/api/exposure").status_code == 401


def test_atb_balance_show_prints_the_same_breakdown_and_exposure(engine: Engine) -> None:
    """The CLI reads the same summary as GET /api/balance: marks, one line per asset, exposure per asset and total."""
    from click.testing import CliRunner

    from chalicelib.cli import main

    session_id, _ = two_pair_account(engine)
    result = CliRunner().invoke(main, ["balance", "show", "--session", str(session_id)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    assert "mark: BTCUSDT $60,000.00" in "\n".join(lines)
    assert "USD $7,967.97 $1.00 $7,967.97 79.14%" in lines
    assert "BTC 0.01 $60,000.00 $600.00 5.96%" in lines
    assert "ETH 0.5 $3,000.00 $1,500.00 14.90%" in lines
    assert "exposure BTC: gross $600.00 (5.96%), net $600.00 (5.96%) of equity" in lines
    assert "exposure total: gross $2,100.00 (20.86%), net $2,100.00 (20.86%) of equity" in lines
