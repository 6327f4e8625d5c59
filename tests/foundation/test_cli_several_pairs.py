"""`atb live ml_basic --symbol BTCUSDT --symbol ETHUSDT --paper-trading --feed replay`: one wallet trades both
pairs from their bundled files (or `--data SYMBOL=FILE`), on SQLite and PostgreSQL; the output names each
candle's pair; bad input is one line, exit 2, nothing written; `sessions start` and `bots add` take several
symbols and their listings show them."""

from __future__ import annotations

import gzip
import re
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from chalicelib.cli import main
from chalicelib.db.engine import get_engine
from chalicelib.db.models import AccountBalance, TickLog, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.trading.feeds import bundled_csv

LIVE = ["live", "ml_basic", "--paper-trading", "--feed", "replay"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def everything(url: str) -> tuple[list[tuple], list[tuple], list[tuple]]:
    with read_transaction(get_engine(url)) as db:
        sessions = [(s.id, s.symbol, s.total_balance, s.version)
                    for s in db.execute(select(TradingSession).order_by(TradingSession.id)).scalars()]
        ledger = [(r.id, r.kind, r.delta)
                  for r in db.execute(select(AccountBalance).order_by(AccountBalance.id)).scalars()]
        ticks = [tuple(r) for r in db.execute(select(TickLog.symbol, func.count()).group_by(TickLog.symbol)
                                              .order_by(TickLog.symbol))]
    return sessions, ledger, ticks


def test_two_pairs_trade_from_one_wallet_on_replay_and_verify(database_url: str) -> None:
    code, out, err = run(*LIVE, "--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--ticks", "120")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (f"Feed: replay of bundled BTCUSDT 1h candles ({bundled_csv('BTCUSDT', '1h')}); "
                        f"replay of bundled ETHUSDT 1h candles ({bundled_csv('ETHUSDT', '1h')})")
    assert "Started session #1 (ml_basic BTCUSDT,ETHUSDT 1h paper) with initial balance $1,000.00" in out
    # both pairs' first candle, each line naming its pair, BTC before ETH within one candle time
    assert re.search(r"^2023-01-01T00:00:00Z  BTCUSDT    close   \$16,529\.67  hold .*\n"
                     r"2023-01-01T00:00:00Z  ETHUSDT    close    \$1,194\.09  hold ", out, re.M)
    fills = [line for line in lines if line.startswith("    ") and (" bought " in line or " sold " in line)]
    assert {line.split()[0] for line in fills} == {"BTCUSDT", "ETHUSDT"}  # each fill says its pair; both traded
    assert lines[-1].endswith("last candle 2023-01-05T23:00Z (BTCUSDT 2023-01-05T23:00Z, ETHUSDT 2023-01-05T23:00Z)")
    sessions, _, ticks = everything(database_url)
    assert [(s[0], s[1]) for s in sessions] == [(1, "BTCUSDT,ETHUSDT")]  # one account
    assert ticks == [("BTCUSDT", 120), ("ETHUSDT", 120)]
    code, out, _ = run("db", "verify")
    assert code == 0 and "session #1 ml_basic BTCUSDT,ETHUSDT 1h paper (active): ok" in out

    # the same bot written another way carries on with the same account
    code, out, err = run(*LIVE, "--symbol", "ETHUSDT,BTCUSDT", "--ticks", "1")
    assert code == 0, err
    assert "Found active session #1 (ml_basic BTCUSDT,ETHUSDT 1h paper)" in out
    assert everything(database_url)[2] == [("BTCUSDT", 121), ("ETHUSDT", 121)]
    code, out, _ = run("sessions", "list")
    assert code == 0 and re.search(r"^#1 +active +ml_basic +BTCUSDT,ETHUSDT +1h ", out, re.M)


def test_data_symbol_file_replaces_one_pairs_candles(database_url: str, tmp_path: Path) -> None:
    rows = gzip.decompress(bundled_csv("ETHUSDT", "1h").read_bytes()).decode().splitlines()
    doubled = [rows[0]]
    for row in rows[1:41]:  # ETH at twice its price, for 40 hours
        ts, *prices, volume = row.split(",")
        doubled.append(",".join([ts, *(str(2 * Decimal(p)) for p in prices), volume]))
    eth = tmp_path / "candles.csv"
    eth.write_text("\n".join(doubled) + "\n")
    code, out, err = run(*LIVE, "--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--data", f"ETHUSDT={eth}",
                         "--ticks", "10")
    assert code == 0, err
    assert out.splitlines()[0].endswith(f"; replay of ETHUSDT 1h candles ({eth})")
    assert "2023-01-01T00:00:00Z  ETHUSDT    close    $2,388.18  hold" in out  # 2 × $1,194.09
    assert "2023-01-01T00:00:00Z  BTCUSDT    close   $16,529.67  hold" in out  # BTC still bundled
    assert run("db", "verify")[0] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--symbol", "BTCUSDT", "--symbol", "SOLUSDT"], "no bundled candles for SOLUSDT"),
    (["--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--data", "SOLUSDT=sol.csv"],
     "--data names SOLUSDT, which the bot does not trade"),
    (["--symbol", "ETHBTC"], "ETHBTC is quoted in BTC, which is not USD: add a BTC/USD pair (like BTCUSDT)"),
    (["--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--data", "eth.csv"],
     "--data 'eth.csv': the bot trades BTCUSDT, ETHUSDT; say which pair the file holds with --data SYMBOL=FILE"),
    (["--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--data", "ETHUSDT=missing.csv"],
     "cannot read candle file missing.csv"),
    (["--symbol", "BTCUSDT,ETHUSDT", "--data", "ETHUSDT=a.csv", "--data", "ETH/USDT=b.csv"],
     "--data gives two files for ETHUSDT"),
    (["--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--data", "ETHUSDT="], "name the file after '='"),
])
def test_bad_pairs_and_files_are_one_line_exit_2_and_change_nothing(database_url: str, args: list[str],
                                                                      message: str) -> None:
    assert run(*LIVE, "--symbol", "BTCUSDT", "--ticks", "2")[0] == 0  # an account that must stay as it is
    before = everything(database_url)
    code, out, err = run(*LIVE, *args, "--ticks", "2")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert everything(database_url) == before


def test_sessions_start_and_bots_add_take_several_symbols_and_list_them(database_url: str) -> None:
    code, out, err = run("sessions", "start", "ml_basic", "--symbol", "ETHUSDT", "--symbol", "BTCUSDT",
                         "--exchange", "replay")
    assert code == 0, err
    assert out == "Started session #1: ml_basic BTCUSDT,ETHUSDT 1h paper, initial balance $1,000.00\n"
    code, out, err = run("bots", "add", "ma_crossover", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT",
                         "--exchange", "binanceus")
    assert code == 0, err
    assert run("bots", "list")[1].startswith("#1 ma_crossover BTCUSDT,ETHUSDT 1h binanceus active")
    before = everything(database_url)
    code, out, err = run("bots", "add", "ma_crossover", "--symbol", "ETHBTC", "--symbol", "SOLUSDT")
    assert code == 2 and "ETHBTC is quoted in BTC" in err and err.count("\n") == 1
    assert everything(database_url) == before
