"""The dashboard, end to end: ``chalice local`` on real Postgres with ledger data, driven in headless Chromium.

Needs Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright`` Python package (its own browser
download is not used: the test launches /usr/bin/chromium, or the browser named by ATB_CHROMIUM). Without them the
test fails and says what to install; it is never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ledger_testing
import pytest
from sqlalchemy import func, select

from chalicelib import ledger
from chalicelib.db.engine import get_engine
from chalicelib.db.models import AccountBalance, Position, TickLog, Trade
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
READ_TOKEN = "dash-read-0123456789abcdef0123456789"
WRITE_TOKEN = "dash-write-fedcba9876543210fedcba98"
TOKENS = f"viewer:read:{READ_TOKEN},owner:write:{WRITE_TOKEN}"
# --- the server ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chalice_executable() -> str:
    candidate = Path(sys.executable).with_name("chalice")
    found = str(candidate) if candidate.exists() else shutil.which("chalice")
    if not found:
        pytest.fail("the chalice CLI is not installed in this environment", pytrace=False)
    return found


@contextmanager
def serve(database_url: str, log_path: Path) -> Iterator[str]:
    """``chalice local`` (stage local) on a free port against ``database_url``; killed with its group."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "ATB_API_TOKENS": TOKENS, "LOG_LEVEL": "WARNING"}
    for name in ("ATB_API_TOKENS_SECRET_ARN", "DATABASE_SECRET_ARN"):
        env.pop(name, None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [_chalice_executable(), "local", "--stage", "local", "--no-autoreload", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chalice local exited with {proc.returncode}:\n{log_path.read_text()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{base}/api/live", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answered (503 would still be an answer)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"chalice local did not answer within 60 s:\n{log_path.read_text()}", pytrace=False)
                time.sleep(0.2)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def server(pg_database_url: str, tmp_path: Path) -> Iterator[str]:
    with serve(pg_database_url, tmp_path / "chalice-local.log") as base:
        yield base


def call(base: str, path: str, token: str | None = WRITE_TOKEN) -> tuple[int, dict[str, str], Any]:
    """GET from the running server; money parsed as Decimal from the response text."""
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    is_json = headers.get("Content-Type", "").startswith("application/json")
    return status, headers, json.loads(raw, parse_float=Decimal) if is_json else raw.decode()


# --- the data --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    main: int
    other: int


def seed(database_url: str) -> Seeded:
    """Two active sessions; the main one has ten days of ledger history, a closed trade and an open position."""
    now = utcnow()
    owner = ledger.Actor("owner", "treasury desk")
    engine = get_engine(database_url)
    with write_transaction(engine) as db:
        s = ledger.start_session(db, strategy="ml_basic", symbol="BTCUSDT", timeframe="1h", exchange="binance",
                                 mode="paper", initial_balance=Decimal("10000"), now=now - timedelta(days=10))
        ledger.record_deposit(db, s, Decimal("2500"), reason="Capital increase", actor=owner,
                              now=now - timedelta(days=8))
        ledger.record_withdrawal(db, s, Decimal("1000"), reason="Moved profits to savings", actor=owner,
                                 now=now - timedelta(days=5, hours=3))
        # a round trip: opened 4 days ago, closed with a profit 3 days ago
        opened, closed = now - timedelta(days=4), now - timedelta(days=3, hours=2)
        won = Position(session_id=s.id, symbol="BTCUSDT", side="long", status="open", entry_price=Decimal("58000"),
                       quantity=Decimal("0.04"), cost=Decimal("2320.00"), stop_loss=Decimal("56500"),
                       take_profit=Decimal("61000"), entry_time=opened, fees=Decimal("2.32"))
        db.add(won)
        db.flush()
        ledger_testing.record_position_opened(db, s, cost=Decimal("2320.00"), fee=Decimal("2.32"),
                                      reference=f"position:{won.id}:open", now=opened)
        won.status, won.exit_price, won.exit_time, won.exit_reason = "closed", Decimal("61000"), closed, "take_profit"
        won.realized_pnl, won.fees = Decimal("120.00"), Decimal("4.76")
        db.flush()
        ledger_testing.record_position_closed(db, s, position_id=won.id, pnl=Decimal("120.00"),
                                              exit_fee=Decimal("2.44"), released_cost=Decimal("2320.00"),
                                              exit_reason="take_profit", now=closed)
        db.add(Trade(session_id=s.id, position_id=won.id, symbol="BTCUSDT", side="long",
                     entry_price=Decimal("58000"), exit_price=Decimal("61000"), quantity=Decimal("0.04"),
                     entry_time=opened, exit_time=closed, realized_pnl=Decimal("120.00"), fees=Decimal("4.76"),
                     exit_reason="take_profit", market_time=closed, recorded_at=closed))
        ledger.record_manual_set(db, s, Decimal("12000"), reason="Rebalance to round capital", actor=owner,
                                 now=now - timedelta(hours=30))
        # within the last 24 hours: an open position and a top-up
        entry_at = now - timedelta(hours=6)
        position = Position(session_id=s.id, symbol="BTCUSDT", side="long", status="open",
                            entry_price=Decimal("60000"), quantity=Decimal("0.05"), cost=Decimal("3000.00"),
                            stop_loss=Decimal("58200"), take_profit=Decimal("63600"), entry_time=entry_at,
                            fees=Decimal("3.00"))
        db.add(position)
        db.flush()
        ledger_testing.record_position_opened(db, s, cost=Decimal("3000.00"), fee=Decimal("3.00"),
                                      reference=f"position:{position.id}:open", now=entry_at)
        ledger.record_deposit(db, s, Decimal("500"), reason="Top-up", actor=owner, now=now - timedelta(hours=2))
        # the last candle closed an hour ago at 61,250: the tick marks the open position there
        book = ledger.Batch(db, s)
        marks = ledger_testing.marks_at(s, "61250.00")
        book.mark(marks=marks, equity=ledger.equity_of(s, [position], marks),
                  market_time=now - timedelta(hours=1))
        book.write()
        db.add(TickLog(session_id=s.id, symbol=s.symbol, candle_time=now - timedelta(hours=2),
                       close_price=Decimal("61250.00"), decision="hold", processed_at=now - timedelta(minutes=20)))
        s.last_tick_at = now - timedelta(minutes=20)

        other = ledger.start_session(db, strategy="ma_crossover", symbol="ETHUSDT", timeframe="4h",
                                     exchange="binance", mode="paper", initial_balance=Decimal("2500"),
                                     now=now - timedelta(days=3))
        main, second = s.id, other.id
    from chalicelib import fleet  # a weekly deposit schedule on the main account, due in two days

    fleet.add_schedule(Decimal("100"), "1w", "Weekly savings", actor=owner, session_id=main,
                       starts_at=now + timedelta(days=2), engine=engine)
    return Seeded(main=main, other=second)


def ledger_count(database_url: str) -> int:
    with read_transaction(get_engine(database_url)) as db:
        return int(db.execute(select(func.count()).select_from(AccountBalance)).scalar_one())


# --- the browser -----------------------------------------------------------------------------------------------


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


def wait_until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll a JS expression from the test side (the page's CSP forbids the eval behind wait_for_function)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def wait_ready(page: Any, after: int = 0) -> None:
    """Wait until the page finished a refresh (the count of refreshes goes above ``after``)."""
    wait_until(page, "document.body.dataset.state === 'ready' && "
                     f"Number(document.body.dataset.refreshes || 0) > {after}")


def refreshes(page: Any) -> int:
    return int(page.evaluate("Number(document.body.dataset.refreshes || 0)"))


def sign_in(page: Any, token: str) -> None:
    page.fill("#token-input", token)
    page.click("#login-form button[type=submit]")
    wait_ready(page)


def submit_change(page: Any, op: str, amount: str, reason: str) -> None:
    page.select_option("#change-op", op)
    page.fill("#change-amount", amount)
    page.fill("#change-reason", reason)
    page.click("#change-submit")


# --- the test --------------------------------------------------------------------------------------------------


def test_the_dashboard_shows_the_ledger_takes_a_deposit_refuses_bad_input_and_hides_the_form_from_readers(
    server: str, pg_database_url: str, browser: Any,
) -> None:
    seeded = seed(pg_database_url)
    ARTIFACTS.mkdir(exist_ok=True)

    # the page and its assets are served without auth, with a strict policy
    status, headers, _ = call(server, "/", token=None)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    status, headers, _ = call(server, "/static/app.js", token=None)
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "text/javascript")
    assert call(server, "/static/secret.py", token=None)[0] == 404
    assert call(server, "/api/me", token=READ_TOKEN)[2] == {"name": "viewer", "scope": "read"}
    assert call(server, "/api/me", token="wrong")[0] == 401

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "status of 40" not in msg.text else None)
    page.goto(server + "/")

    # a wrong token is turned away with a message
    page.fill("#token-input", "not-a-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "not accepted" in page.inner_text("#login-error")
    problems.clear()  # the 401 above is logged by the browser as a failed resource load

    sign_in(page, WRITE_TOKEN)

    # several active sessions: the picker lists them, the first is shown
    assert page.is_visible("#session-picker")
    options = page.eval_on_selector_all("#session-picker option", "os => os.map(o => o.value)")
    assert options == [str(seeded.main), str(seeded.other)]

    # the balance and the 24h change on the page are the API's
    _, _, api_balance = call(server, f"/api/balance?session_id={seeded.main}")
    balance, change = api_balance["current_balance"], api_balance["balance_change_24h"]
    assert balance == Decimal("12497.00")  # 12000 set 30 h ago, then a 3.00 entry fee and a 500 top-up
    assert page.inner_text("#balance-value") == money(balance)
    assert Decimal(page.get_attribute("#balance-value", "data-value") or "") == balance
    # 24 h performance excludes the 500 top-up: 12,000 (set 30 h ago) → entry fee 3 → +500 flow → the open
    # position marked at 61,250 (+62.50): equity 12,559.50 over 12,000 + 500 × 12,000 / 11,997 of starting value.
    expected = (Decimal("12559.5") / (Decimal(12000) + Decimal(500) * Decimal(12000) / Decimal(11997)) - 1) * 100
    assert change == expected.quantize(Decimal("0.01")) == Decimal("0.47")
    assert f"{change:+.2f}%" in page.inner_text("#change-24h")
    assert "up" in (page.get_attribute("#change-24h", "class") or "")
    assert (api_balance["balance_delta_24h"], api_balance["net_flows_24h"]) == (Decimal("559.5"), Decimal(500))
    flows = page.inner_text("#flows-24h")
    assert "+559.50" in flows and "deposits/withdrawals +500.00" in flows and "trading +59.50" in flows
    assert page.inner_text("#available-value") == f"{money(api_balance['available_balance'])} USD"
    assert page.inner_text("#reserved-value") == f"{money(api_balance['reserved_balance'])} USD"
    assert page.inner_text("#equity-value") == f"{money(api_balance['equity'])} USD"
    assert Decimal(page.get_attribute("#twr-value", "data-value") or "") == api_balance["time_weighted_return"]
    assert Decimal(page.get_attribute("#drawdown", "data-value") or "") == api_balance["drawdown"]
    assert "peak value per unit" in page.inner_text("#drawdown")
    assert "BTC" in page.inner_text("#assets")
    # the open position with entry, stop, target and unrealised P&L at the last close (61250)
    position_row = page.inner_text("#positions tbody tr")
    for text in ("BTCUSDT", "60,000.00", "58,200.00", "63,600.00", "+62.50"):
        assert text in position_row
    assert "take profit" in page.inner_text("#trades tbody")
    upcoming = page.inner_text("#deposits tbody tr")
    assert "100.00" in upcoming and "1w" in upcoming and "Weekly savings" in upcoming
    assert page.locator("#history tbody tr").count() == 9  # every ledger row of the main session
    assert page.get_attribute("#tick-status", "data-stale") == "false"
    assert page.locator("#chart svg path.line").count() == 1

    # a deposit through the form: new balance, new history row, one more ledger row
    rows_before = ledger_count(pg_database_url)
    n = refreshes(page)
    submit_change(page, "deposit", "250.75", "Browser test deposit")
    page.wait_for_selector("#change-ok:not([hidden])")
    wait_ready(page, n)
    _, _, after = call(server, f"/api/balance?session_id={seeded.main}")
    assert after["current_balance"] == balance + Decimal("250.75")
    assert page.inner_text("#balance-value") == money(after["current_balance"])
    newest = page.locator("#history tbody tr").first
    assert newest.locator("td.num").first.get_attribute("data-value") == "250.75"
    assert "Browser test deposit" in newest.inner_text()
    assert "owner" in newest.inner_text()
    assert ledger_count(pg_database_url) == rows_before + 1

    # invalid amounts: an error on the page and nothing changed
    rows_before = ledger_count(pg_database_url)
    for op, amount in (("deposit", "abc"), ("deposit", "-5")):
        submit_change(page, op, amount, "should not happen")
        page.wait_for_selector("#change-error:not([hidden])")
        assert "Invalid amount" in page.inner_text("#change-error")
    # the server refuses too much of a withdrawal (409) and the page shows its message
    submit_change(page, "withdraw", "999999", "far more than there is")
    wait_until(page, "document.querySelector('#change-error').textContent.includes('Refused')")
    assert "available balance would be" in page.inner_text("#change-error")
    assert ledger_count(pg_database_url) == rows_before
    assert page.inner_text("#balance-value") == money(after["current_balance"])

    # the ledger screenshots for review (the README's docs/dashboard*.png come from the wallet test below)
    page.reload()
    wait_ready(page)
    page.click("[data-range='30d']")
    page.wait_for_selector("[data-range='30d'][aria-pressed='true']")
    assert page.locator("#chart svg path.line").count() == 1
    page.click("[data-range='7d']")
    page.wait_for_selector("[data-range='7d'][aria-pressed='true']")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "dashboard-ledger.png"), full_page=True)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, locale="en-US",
                                timezone_id="UTC", is_mobile=True, has_touch=True)
    phone_page = phone.new_page()
    phone_page.goto(server + "/")
    sign_in(phone_page, WRITE_TOKEN)
    phone_page.screenshot(path=str(ARTIFACTS / "dashboard-ledger-phone.png"), full_page=True)
    assert phone_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    phone.close()

    # another session picked: its own balance
    n = refreshes(page)
    page.select_option("#session-picker", str(seeded.other))
    wait_ready(page, n)
    assert page.inner_text("#balance-value") == "2,500.00"

    # a read token sees the data but no form
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    sign_in(page, READ_TOKEN)
    assert page.is_hidden("#change")
    assert page.is_hidden("#change-form")
    assert "read" in page.inner_text("#who")
    assert page.inner_text("#balance-value") == "2,500.00"

    assert problems == []
    context.close()


def test_after_the_quick_start_the_chart_spans_the_300_replayed_market_hours(browser: Any, tmp_path: Path) -> None:
    """The README's first command, then the dashboard on its SQLite file: the chart runs on market time, from the
    first replayed candle (2023-01-01) to the 300th (2023-01-13), not a spike at today's wall clock.
    The screenshot is docs/dashboard-quickstart.png."""
    run = subprocess.run([sys.executable, "-m", "chalicelib.cli", "live", "ml_basic", "--symbol", "BTCUSDT",
                          "--paper-trading", "--feed", "replay", "--ticks", "300"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, check=False,
                         env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    with serve(f"sqlite:///{tmp_path / 'atb.sqlite3'}", tmp_path / "chalice-local.log") as base:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
        page = context.new_page()
        page.goto(base + "/")
        sign_in(page, READ_TOKEN)
        page.click("[data-range='all']")
        page.wait_for_selector("[data-range='all'][aria-pressed='true']")
        wait_until(page, "document.querySelector('#chart svg path.line') !== null")
        axis = page.inner_text("#chart")
        assert "Jan 1" in axis and "Jan 13" in axis, axis  # January 2023, the replayed hours
        assert str(datetime.now(UTC).year) not in axis  # nothing at today's wall clock
        points = page.evaluate("document.querySelector('#chart svg path.line').getAttribute('d').split('V').length")
        assert points > 20  # a line through the whole replay, not one vertical step
        ARTIFACTS.mkdir(exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "dashboard-quickstart.png"), full_page=False)
        context.close()


# --- one wallet, two pairs (issue 13) ---------------------------------------------------------------------------


def seed_wallet(database_url: str) -> int:
    """A BTCUSDT+ETHUSDT account, worked by hand. 10,000 USD in, two days ago. Closed: 0.01 BTC bought at 57,000
    (fee 0.57) sold at 59,000 (+20, fee 0.59); 0.5 ETH bought at 3,100 (fee 1.55) sold at 3,000 (−50, fee 1.50).
    Open: 0.01 BTC at 58,000 (cost 580, fee 0.58) and 0.5 ETH at 2,900 (cost 1,450, fee 1.45). Cash =
    10,000 − 0.57 + 20 − 0.59 − 1.55 − 50 − 1.50 − 580.58 − 1,451.45 = 7,933.76; marks 60,000 and 3,000: BTC 600,
    ETH 1,500, equity 10,033.76. 48 market times of tick rows, one per pair each (the ETH row written last)."""
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    engine = get_engine(database_url)
    start = now - timedelta(hours=49)
    with write_transaction(engine) as db:
        sid = ledger.start_session(db, strategy="ml_basic", symbol="BTCUSDT,ETHUSDT", timeframe="1h",
                                   exchange="binance", mode="paper", initial_balance=Decimal(10000), now=start).id
    with write_transaction(engine) as db:
        s = ledger.lock_session(db, sid)
        assert s is not None
        closed_trades = (("BTCUSDT", "0.01", "57000", "59000", "20", ("0.57", "0.59"), 40),
                         ("ETHUSDT", "0.5", "3100", "3000", "-50", ("1.55", "1.50"), 30))
        for symbol, qty, buy, sell, pnl, fees, hours in closed_trades:
            opened, closed = now - timedelta(hours=hours), now - timedelta(hours=hours - 5)
            cost = Decimal(qty) * Decimal(buy)
            p = Position(session_id=sid, symbol=symbol, side="long", status="open", entry_price=Decimal(buy),
                         quantity=Decimal(qty), cost=cost, entry_time=opened, fees=Decimal(fees[0]),
                         strategy="ml_basic", strategy_version="v1")
            db.add(p)
            db.flush()
            ledger_testing.record_position_opened(db, s, cost=cost, fee=Decimal(fees[0]),
                                                  reference=f"position:{p.id}:open", now=opened)
            p.status, p.exit_price, p.exit_time, p.exit_reason = "closed", Decimal(sell), closed, "strategy_exit"
            p.realized_pnl, p.fees = Decimal(pnl), Decimal(fees[0]) + Decimal(fees[1])
            ledger_testing.record_position_closed(db, s, position_id=p.id, pnl=Decimal(pnl), exit_fee=Decimal(fees[1]),
                                                  released_cost=cost, now=closed)
            db.add(Trade(session_id=sid, position_id=p.id, symbol=symbol, side="long", entry_price=Decimal(buy),
                         exit_price=Decimal(sell), quantity=Decimal(qty), entry_time=opened, exit_time=closed,
                         realized_pnl=Decimal(pnl), fees=p.fees, exit_reason="strategy_exit", market_time=closed,
                         recorded_at=closed, strategy="ml_basic", strategy_version="v1"))
        ledger_testing.hold_btc_and_eth(db, s, opened_at=now - timedelta(hours=12),
                                        marked_at=now - timedelta(hours=1), market_time=now, stops=True,
                                        strategy_version="v1")
        units = ledger.unit_state(s)  # the account's units now, recorded on every tick row for simplicity
        for i in range(48, 0, -1):  # exposure after each candle time, as the positions above were held
            at = now - timedelta(hours=i)
            btc = Decimal(580 + (40 - i) * 4) if 35 < i <= 40 else Decimal(590 + (12 - i)) if i <= 11 else Decimal(0)
            eth = Decimal(1550 - (30 - i) * 10) if 25 < i <= 30 else Decimal(1440 + (12 - i) * 6) if i <= 11 else 0
            if i == 1:
                btc, eth = Decimal(600), Decimal(1500)
            for symbol, gross in (("BTCUSDT", btc), ("ETHUSDT", btc + eth)):  # the ETH row, written last, has both
                db.add(TickLog(session_id=sid, symbol=symbol, candle_time=at, close_price=Decimal(1), decision="hold",
                               processed_at=at + timedelta(hours=1, minutes=1), market_time=at + timedelta(hours=1),
                               equity=Decimal("10033.76"), exposure=gross,
                               units=units.units, unit_value=units.unit_value,
                               performance_index=units.performance_index))
                db.flush()
        s.last_tick_at = now - timedelta(minutes=5)
    return sid


def cells(page: Any, row: str) -> list[str]:
    """The text of each cell of a table row (without the phone layout's data-label)."""
    return [str(t).strip() for t in page.eval_on_selector_all(f"{row} td", "cs => cs.map(c => c.textContent)")]


def check_wallet(page: Any, base: str) -> None:
    """The breakdown, exposure, chart and attribution on the page, against figures worked out by hand."""
    assert cells(page, "#breakdown tr[data-asset='USD']") == ["USD", "7,933.76", "1.00", "7,933.76", "79.07%"]
    assert cells(page, "#breakdown tr[data-asset='BTC']") == ["BTC", "0.01", "60,000.00", "600.00", "5.98%"]
    assert cells(page, "#breakdown tr[data-asset='ETH']") == ["ETH", "0.5", "3,000.00", "1,500.00", "14.95%"]
    # shares of equity 10,033.76: 600 → 0.059798, 1,500 → 0.149495, 2,100 → 0.209293
    assert cells(page, "#exposure tr[data-asset='BTC']") == ["BTC", "600.00", "5.98%", "600.00", "5.98%"]
    assert cells(page, "#exposure tr[data-asset='ETH']") == ["ETH", "1,500.00", "14.95%", "1,500.00", "14.95%"]
    assert cells(page, "#exposure tr[data-asset='total']") == ["Total", "2,100.00", "20.93%", "2,100.00", "20.93%"]
    assert page.get_attribute("#exposure tr[data-asset='total'] td:nth-child(3)", "data-value") == "0.209293"
    marks = page.inner_text("#marks")
    assert "BTCUSDT 60,000.00 USD" in marks and "ETHUSDT 3,000.00 USD" in marks and "USDT counted 1:1" in marks
    assert page.locator("#exposure-chart svg path.line").count() == 1
    assert "48 market times" in page.inner_text("#exposure-note")
    axis = page.inner_text("#exposure-chart")
    assert "%" in axis
    # each open position at its own pair's close
    assert cells(page, "#positions tbody tr:nth-child(1)")[:5] == ["BTCUSDT", "long", "0.01", "58,000.00", "60,000.00"]
    assert cells(page, "#positions tbody tr:nth-child(2)")[:5] == ["ETHUSDT", "long", "0.5", "2,900.00", "3,000.00"]
    assert cells(page, "#positions tbody tr:nth-child(2)")[-1] == "+50.00"
    # attribution, worked by hand: BTC +20 gross − 1.16 fees = +18.84; ETH −50 − 3.05 = −53.05; both opened by
    # ml_basic: 2 trades, 1 win, net −34.21, fees 4.21
    assert page.inner_text("#attribution-note") == ""
    by_symbol = "#attribution-symbol tr[data-key='{}']"
    assert cells(page, by_symbol.format("BTCUSDT"))[:5] == ["BTCUSDT", "1", "100.00%", "+18.84", "1.16"]
    assert cells(page, by_symbol.format("ETHUSDT"))[:5] == ["ETHUSDT", "1", "0.00%", "-53.05", "3.05"]
    assert cells(page, "#attribution-symbol tr[data-key='ETHUSDT']")[6] == "-53.05"  # the average loss
    assert cells(page, "#attribution-symbol tr.total")[:5] == ["Total", "2", "50.00%", "-34.21", "4.21"]
    assert cells(page, "#attribution-strategy tr[data-key='ml_basic']")[:7] == [
        "ml_basic", "2", "50.00%", "-34.21", "4.21", "18.84", "-53.05"]
    for by in ("strategy", "symbol"):  # the contributions are the API's, as percent
        _, _, report = call(base, f"/api/performance?by={by}")
        for group in report["groups"]:
            shown = cells(page, f"#attribution-{by} tr[data-key='{group['key']}']")[7]
            assert shown == f"{Decimal(group['contribution']) * 100:.2f}%", (shown, group)


def test_the_dashboard_shows_the_wallet_breakdown_exposure_and_attribution_on_a_desktop_and_a_phone(
    server: str, pg_database_url: str, browser: Any,
) -> None:
    seed_wallet(pg_database_url)
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    for name, options in (("desktop", {"viewport": {"width": 1280, "height": 900}}),
                          ("phone", {"viewport": {"width": 375, "height": 812}, "device_scale_factor": 1,
                                     "is_mobile": True, "has_touch": True})):
        context = browser.new_context(locale="en-US", timezone_id="UTC", **options)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" and "status of 403" not in msg.text and "status of 404" not in msg.text
                else None)
        page.goto(server + "/")
        sign_in(page, READ_TOKEN)
        # the balance is cash 7,933.76 + the cost of the open positions 2,030
        assert page.inner_text("#balance-value") == "9,963.76", page.inner_text("#global-error")
        assert page.inner_text("#equity-value") == "10,033.76 USD"
        assert "BTCUSDT + ETHUSDT" in page.inner_text("#session-label")
        check_wallet(page, server)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name  # no sideways
        page.evaluate("window.scrollTo(0, 0)")
        shot = "dashboard.png" if name == "desktop" else "dashboard-phone.png"
        page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
        context.close()
    assert problems == []
