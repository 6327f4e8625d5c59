"""``GET /api/performance`` and ``atb report`` on SQLite and PostgreSQL: trades booked by the real tick, attributed
to the strategy that opened them across a switch, split by symbol on a two-pair account, windowed by market time;
bad input is a 400 (exit 2) that changes nothing; the CLI prints what the API answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from api_helpers import READ_TOKEN, auth, ledger_rows
from chalice.test import Client
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select

from chalicelib.api import schemas
from chalicelib.bot.sessions import open_session, switch_strategy
from chalicelib.bot.tick import fixed_clock, tick_session
from chalicelib.bots import BotSpec
from chalicelib.cli import main
from chalicelib.db.models import TickLog, Trade
from chalicelib.db.uow import read_transaction
from chalicelib.jsonutil import loads_exact
from chalicelib.trading.candles import Candle
from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies import Decision, EnterLong, Exit, Hold

HOUR = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _candle(i: int, close: str, high: str | None = None, low: str | None = None) -> Candle:
    c = Decimal(close)
    return Candle(T0 + HOUR * i, c, Decimal(high) if high else c, Decimal(low) if low else c, c, Decimal(10))


@dataclass
class PairsFeed:
    """An exchange serving fixed candles per symbol: whatever has closed at ``now``."""

    candles: dict[str, list[Candle]]

    def fetch_closed_candles(self, symbol: str, timeframe: str, since: datetime | None, limit: int,
                             now: datetime) -> list[Candle]:
        closed = [c for c in self.candles[symbol]
                  if c.open_time + HOUR <= now and (since is None or c.open_time > since)]
        return closed[:limit] if since is not None else closed[-limit:]


@dataclass
class Scripted:
    """A strategy that decides from a script keyed by the deciding candle's open time (every pair alike)."""

    name: str
    version: str
    script: dict[datetime, Decision] = field(default_factory=dict)
    warmup: int = 1

    def decide(self, candles: Sequence[Candle], position: PositionView | None) -> Decision:
        action = self.script.get(candles[-1].open_time, Hold())
        if (isinstance(action, EnterLong) and position is not None) or (isinstance(action, Exit) and position is None):
            return Hold()
        return action


def _get(client: Client, query: str = "", token: str = READ_TOKEN) -> Any:
    return client.http.get(f"/api/performance{query}", headers=auth(token))


def _report(client: Client, query: str = "") -> dict[str, Any]:
    response = _get(client, query)
    assert response.status_code == 200, response.body
    body = loads_exact(response.body)
    schemas.PerformanceResponse.model_validate(body)  # the documented shape
    return body


def _trades(engine: Engine) -> list[Trade]:
    with read_transaction(engine) as db:
        return list(db.execute(select(Trade).order_by(Trade.id)).scalars())


def _average_equity(engine: Engine, start: datetime | None = None, end: datetime | None = None) -> Decimal:
    """Worked out here from the tick rows: the equity after the last candle applied at each close, averaged."""
    with read_transaction(engine) as db:
        rows = db.execute(select(TickLog.market_time, TickLog.id, TickLog.equity).order_by(TickLog.id)).all()
    last = {t: e for t, _, e in rows if (start is None or t >= start) and (end is None or t < end)}
    with localcontext() as ctx:
        ctx.prec = 50
        return (sum(last.values(), Decimal(0)) / len(last)).quantize(Decimal("1e-8"))


def _expected(key: str, trades: list[Trade], equity: Decimal) -> dict[str, Any]:
    nets = [t.realized_pnl - t.fees for t in trades]
    with localcontext() as ctx:
        ctx.prec = 50
        contribution = (sum(nets, Decimal(0)) / equity).quantize(Decimal("1e-18"))
    return {"key": key, "trades": len(trades), "wins": sum(n > 0 for n in nets), "losses": sum(n <= 0 for n in nets),
            "realized_pnl": sum((t.realized_pnl for t in trades), Decimal(0)),
            "fees": sum((t.fees for t in trades), Decimal(0)), "net_pnl": sum(nets, Decimal(0)),
            "contribution": contribution}


def _figures(group: dict[str, Any]) -> dict[str, Any]:
    keys = ("key", "trades", "wins", "losses", "realized_pnl", "fees", "net_pnl", "contribution")
    return {k: group[k] for k in keys}


# --- a strategy switch mid-way ---------------------------------------------------------------------------------


def _switched_account(engine: Engine) -> int:
    """ma_crossover (version ma-v1) buys at candle 1; the account switches to ml_basic (ml-v7), which sells that
    position at candle 4, buys again at candle 5 and is taken out at its 120 target by candle 7's high."""
    spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=Decimal(10000), start_cursor=T0).session_id
    closes = ["100", "100", "101", "102", "99", "100", "104", "110", "100", "100"]
    candles = [_candle(i, c, high="125" if i == 7 else None) for i, c in enumerate(closes)]
    feed = PairsFeed({"BTCUSDT": candles})
    ma = Scripted("ma_crossover", "ma-v1",
                  {T0 + HOUR: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(200))})
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 4), strategy=ma)
    switch_strategy(engine, sid, "ml_basic")
    ml = Scripted("ml_basic", "ml-v7", {T0 + HOUR * 4: Exit(),
                                        T0 + HOUR * 5: EnterLong(stop_loss=Decimal(90), take_profit=Decimal(120))})
    tick_session(engine, sid, feed, clock=fixed_clock(T0 + HOUR * 10), strategy=ml)
    return sid


def test_trades_opened_before_a_switch_stay_with_the_strategy_that_opened_them(client: Client, engine: Engine) -> None:
    sid = _switched_account(engine)
    trades = _trades(engine)
    assert [(t.strategy, t.strategy_version, t.exit_reason, t.market_time) for t in trades] == [
        ("ma_crossover", "ma-v1", "strategy_exit", T0 + HOUR * 5),  # sold by ml_basic, opened by ma_crossover
        ("ml_basic", "ml-v7", "take_profit", T0 + HOUR * 8)]
    old, new = trades
    assert old.realized_pnl - old.fees < 0 < new.realized_pnl - new.fees

    body = _report(client)
    equity = _average_equity(engine)
    assert (body["session_id"], body["by"], body["from"], body["to"], body["average_equity"]) == (
        sid, "strategy", None, None, equity)
    ma, ml = body["groups"]
    assert _figures(ma) == _expected("ma_crossover", [old], equity) and ma["versions"] == ["ma-v1"]
    assert _figures(ml) == _expected("ml_basic", [new], equity) and ml["versions"] == ["ml-v7"]
    assert (ma["win_rate"], ma["average_win"], ma["average_loss"]) == (0, None, old.realized_pnl - old.fees)
    assert (ml["win_rate"], ml["average_win"], ml["average_loss"]) == (1, new.realized_pnl - new.fees, None)
    assert _figures(body["total"]) == _expected("total", trades, equity)
    assert body["total"]["win_rate"] == Decimal("0.5") and body["total"]["versions"] is None

    # the window is [from, to) in market time: the first trade closed at 05:00, the second at 08:00
    later = _report(client, "?from=2024-01-01T06:00:00Z")
    assert [g["key"] for g in later["groups"]] == ["ml_basic"] and later["total"]["trades"] == 1
    assert later["from"] == "2024-01-01T06:00:00Z" and later["to"] is None
    assert later["average_equity"] == _average_equity(engine, start=T0 + HOUR * 6)
    assert _figures(later["groups"][0]) == _expected("ml_basic", [new], later["average_equity"])
    earlier = _report(client, f"?session_id={sid}&to=2024-01-01T05:00:00%2B00:00")
    assert earlier["groups"] == [] and earlier["total"]["trades"] == 0  # closed at 05:00: not before it
    assert earlier["total"]["win_rate"] is None and earlier["total"]["contribution"] == 0
    assert earlier["from"] is None and earlier["to"] == "2024-01-01T05:00:00Z"
    # the close at 05:00 is out of the window: Ē is over the closes at 01:00–04:00
    assert earlier["average_equity"] == _average_equity(engine, end=T0 + HOUR * 5)
    upto = _report(client, "?from=2024-01-01&to=2024-01-01T05:00:01Z")
    assert [g["key"] for g in upto["groups"]] == ["ma_crossover"]
    assert _report(client, "?from=2024-01-01T05:00:00Z")["total"]["trades"] == 2  # from is included
    empty = _report(client, "?from=2025-01-01")
    assert empty["groups"] == [] and empty["average_equity"] is None and empty["total"]["contribution"] is None


# --- by symbol on a two-pair account ---------------------------------------------------------------------------


def _two_pair_account(engine: Engine) -> int:
    """One wallet trading BTCUSDT and ETHUSDT: both bought at candle 1; BTC reaches its 120 target at candle 3, ETH
    falls through its 90 stop at candle 5."""
    spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT,ETHUSDT", timeframe="1h", exchange="binance")
    sid = open_session(engine, spec, initial_balance=Decimal(10000), start_cursor=T0).session_id
    btc = [_candle(i, c, high="125" if i == 3 else None) for i, c in enumerate(["100", "100", "104", "121", "118",
                                                                                  "117", "116"])]
    eth = [_candle(i, c, low="85" if i == 5 else None) for i, c in enumerate(["100", "100", "97", "96", "95", "88",
                                                                              "89"])]
    strategy = Scripted("ma_crossover", "ma-v1", {T0 + HOUR: EnterLong(stop_loss=Decimal(90),
                                                                       take_profit=Decimal(120))})
    result = tick_session(engine, sid, PairsFeed({"BTCUSDT": btc, "ETHUSDT": eth}),
                          clock=fixed_clock(T0 + HOUR * 7), strategy=strategy)
    assert result.status == "applied", result
    return sid


def test_by_symbol_splits_one_wallets_trades_by_pair_and_the_total_is_the_same_as_by_strategy(
        client: Client, engine: Engine) -> None:
    _two_pair_account(engine)
    trades = _trades(engine)
    assert [(t.symbol, t.exit_reason) for t in trades] == [("BTCUSDT", "take_profit"), ("ETHUSDT", "stop_loss")]
    btc, eth = trades
    body = _report(client, "?by=symbol")
    equity = _average_equity(engine)
    assert body["by"] == "symbol" and body["average_equity"] == equity
    assert [_figures(g) for g in body["groups"]] == [_expected("BTCUSDT", [btc], equity),
                                                     _expected("ETHUSDT", [eth], equity)]
    assert body["groups"][0]["wins"] == 1 and body["groups"][1]["losses"] == 1
    assert all(g["versions"] is None for g in [*body["groups"], body["total"]])
    assert _figures(body["total"]) == _expected("total", trades, equity)
    by_strategy = _report(client)
    assert by_strategy["total"] == body["total"]
    assert [g["key"] for g in by_strategy["groups"]] == ["ma_crossover"]
    # ETH's stop closed at 06:00, after BTC's target at 04:00
    assert [g["key"] for g in _report(client, "?by=symbol&from=2024-01-01T05:00:00Z")["groups"]] == ["ETHUSDT"]


# --- bad input, auth, the document -----------------------------------------------------------------------------

BAD_QUERIES = ["?by=", "?by=asset", "?by=Strategy", "?from=", "?from=yesterday", "?to=2024-13-01",
               "?from=2024-02-01&to=2024-02-01", "?from=2024-02-02&to=2024-02-01T23:59:59Z",
               "?from=0001-01-01T00:00:00%2B01:00", "?sesion_id=1", "?session_id=0", "?session_id=x",
               "?window=7d"]


def test_bad_input_is_a_400_with_the_error_shape_and_changes_nothing(client: Client, engine: Engine) -> None:
    _two_pair_account(engine)
    before = ledger_rows(engine)
    for query in BAD_QUERIES:
        response = _get(client, query)
        assert response.status_code == 400, (query, response.body)
        error = loads_exact(response.body)["error"]
        assert error["code"] == "invalid_parameter" and error["message"] and error["details"], query
    assert ledger_rows(engine) == before


def test_bad_input_names_the_parameter_and_says_what_is_accepted(client: Client, start_session) -> None:
    start_session("1000")
    refusals = [
        ("?by=asset", "by", "by must be one of strategy, symbol (got 'asset')"),
        ("?from=yesterday", "from", "from must be an ISO date or date and time, e.g. 2024-01-31 or "
                                    "2024-01-31T12:00:00Z (got 'yesterday')"),
        ("?from=2024-02-01&to=2024-02-01", "to", "from must be before to (the window is [from, to))"),
    ]
    for query, name, message in refusals:
        response = _get(client, query)
        assert response.status_code == 400, (query, response.body)
        assert loads_exact(response.body) == {"error": {"code": "invalid_parameter", "message": message,
                                                        "details": [{"field": name, "message": message}]}}


def test_another_accounts_candles_do_not_change_this_accounts_average_equity(client: Client, engine: Engine) -> None:
    sid = _two_pair_account(engine)
    before = _report(client, f"?session_id={sid}")
    spec = BotSpec(strategy="ma_crossover", symbol="BTCUSDT", timeframe="1h", exchange="kraken")
    other = open_session(engine, spec, initial_balance=Decimal(1000), start_cursor=T0).session_id
    candles = [_candle(i, "50") for i in range(7)]  # the same closes in market time, ticked after: higher ids
    result = tick_session(engine, other, PairsFeed({"BTCUSDT": candles}), clock=fixed_clock(T0 + HOUR * 7),
                          strategy=Scripted("ma_crossover", "ma-v1"))
    assert result.status == "applied", result
    assert _report(client, f"?session_id={other}")["average_equity"] == 1000  # holds its cash at every close
    assert _report(client, f"?session_id={sid}") == before


def test_a_tick_row_from_before_equities_were_recorded_is_not_averaged(client: Client, engine: Engine) -> None:
    """A tick row written before migration 0003 has a market time (the migration set it) but no equity."""
    sid = _two_pair_account(engine)
    before = _report(client)
    assert before["average_equity"] is not None
    with engine.begin() as conn:
        conn.execute(insert(TickLog).values(
            session_id=sid, symbol="BTCUSDT", candle_time=T0 - HOUR, close_price=Decimal(100), decision="hold",
            processed_at=T0, market_time=T0))
    assert _report(client) == before


def test_the_route_needs_a_token_names_a_missing_session_and_is_documented(client: Client, start_session) -> None:
    start_session("1000")
    assert client.http.get("/api/performance").status_code == 401
    assert _get(client, "?session_id=999").status_code == 404
    fresh = _report(client)
    assert fresh["groups"] == [] and fresh["total"]["net_pnl"] == 0 and fresh["average_equity"] is None
    document = loads_exact(client.http.get("/api/openapi.json", headers=auth(READ_TOKEN)).body)
    operation = document["paths"]["/api/performance"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"session_id", "by", "from", "to"}
    assert "PerformanceResponse" in document["components"]["schemas"]


# --- atb report: the same numbers ------------------------------------------------------------------------------


def test_atb_report_prints_what_the_api_answers_and_refuses_bad_input_in_one_line(
        client: Client, engine: Engine) -> None:
    _two_pair_account(engine)
    window = (["--from", "2024-01-01", "--to", "2024-01-01T05:00:00Z"], "?from=2024-01-01&to=2024-01-01T05:00:00Z")
    for args, query in [(["--by", "symbol"], "?by=symbol"), ([], ""), window]:
        result = CliRunner().invoke(main, ["report", "--json", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert loads_exact(result.stdout) == _report(client, query)
    text = CliRunner().invoke(main, ["report", "--by", "symbol"], catch_exceptions=False)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("Session #") and "average equity $" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == ["BTCUSDT", "ETHUSDT", "total"]
    before = ledger_rows(engine)
    for bad in (["--by", "asset"], ["--from", "2024-02-01", "--to", "2024-01-01"], ["--to", "soon"]):
        refused = CliRunner().invoke(main, ["report", *bad], catch_exceptions=False)
        assert refused.exit_code == 2 and refused.stdout == "", (bad, refused.output)
        assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith("error: --")
    assert ledger_rows(engine) == before


def test_atb_report_of_a_window_without_trades_prints_a_total_of_zeros(start_session) -> None:
    sid = start_session("1000")
    result = CliRunner().invoke(main, ["report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    header, _, total, *rest = result.stdout.splitlines()
    assert header == f"Session #{sid}: closed trades by strategy, since the start; average equity n/a"
    assert total.split() == ["total", "0", "0", "n/a", "$0.00", "$0.00", "$0.00", "n/a", "n/a", "n/a"] and not rest


def test_a_report_is_read_in_one_transaction(engine: Engine) -> None:
    """Every figure of one report sees the same moment: one BEGIN, the session, the trades and the candle rows."""
    from sqlalchemy import event

    from chalicelib.performance import read_report

    _two_pair_account(engine)
    begins: list[object] = []
    statements: list[str] = []

    def begin(conn: object) -> None:
        begins.append(conn)

    def execute(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "begin", begin)
    event.listen(engine, "before_cursor_execute", execute)
    try:
        report = read_report(None, "symbol", engine=engine)
    finally:
        event.remove(engine, "begin", begin)
        event.remove(engine, "before_cursor_execute", execute)
    assert len(begins) == 1 and report.total.trades == 2
    assert sum("FROM trades" in s for s in statements) == 1 and sum("FROM tick_log" in s for s in statements) == 1
