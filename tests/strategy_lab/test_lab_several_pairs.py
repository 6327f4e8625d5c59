"""`atb backtest STRATEGY --symbol BTCUSDT --symbol ETHUSDT`: one wallet trades both pairs through the same engine;
the report gives each pair's closed trades (read by symbol) and the wallet's, beside buy and hold of an
equal-weight basket — worked out here by hand on small candle sets."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from click.testing import CliRunner

from chalicelib.bot.backtest import BacktestError, equal_weight_basket, run_backtest
from chalicelib.bot.tick import TickSettings
from chalicelib.cli import main
from chalicelib.money import format_usd, quantize_money
from chalicelib.trading.broker import BrokerConfig
from lab.report import analyse, headline_table

START = datetime(2024, 1, 1, tzinfo=UTC)


def test_the_basket_splits_the_capital_equally_pays_the_fee_once_and_holds() -> None:
    # fee 25 %: each $500 share buys $400 of its pair and pays $100 — 4 of A at 100, 8 of B at 50
    basket = equal_weight_basket(D(1000), [{"A": D(100), "B": D(50)}, {"A": D(110), "B": D(45)},
                                           {"A": D(120), "B": D(40)}], D("0.25"))
    assert basket.quantities == {"A": D(4), "B": D(8)}
    assert basket.fees == D("200.00")
    assert basket.values == (D("800.00"), D("800.00"), D("800.00"))  # 4×110 + 8×45 = 800, 4×120 + 8×40 = 800
    assert basket.return_pct(D(1000)) == D("-20.00")


def test_a_pair_without_a_candle_at_some_time_is_held_at_its_last_close() -> None:
    basket = equal_weight_basket(D(1000), [{"A": D(100), "B": D(50)}, {"A": D(110)}, {"A": D(120), "B": D(40)}],
                                 D(0))
    assert basket.quantities == {"A": D(5), "B": D(10)}
    assert basket.values == (D("1000.00"), D("1050.00"), D("1000.00"))  # 5×110 + 10×50 (B's last close)
    assert basket.fees == D("0.00")


def _write(path: Path, closes: list[D]) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["timestamp_ms", "open", "high", "low", "close", "volume"])
        previous = closes[0]
        for i, close in enumerate(closes):
            ms = int((START + timedelta(hours=i)).timestamp() * 1000)
            out.writerow([ms, previous, max(previous, close) + 1, min(previous, close) - 1, close, 10])
            previous = close
    return path


def _pairs(tmp_path: Path) -> dict[str, Path]:
    """100 hourly candles each; the last 48 (two days) are tested: BTC 100 → 120, ETH 50 → 40 at the ends."""
    btc = [D(100)] * 53 + [D(100) + D("0.5") * i for i in range(1, 47)] + [D(120)]
    eth = [D(50)] * 53 + [D(50) - D("0.2") * i for i in range(1, 47)] + [D(40)]
    return {"BTCUSDT": _write(tmp_path / "btc.csv", btc), "ETHUSDT": _write(tmp_path / "eth.csv", eth)}


@pytest.mark.parametrize(("fee_rate", "final", "fees", "pct"), [
    # each $500 share buys 500 / (close × 1.001): (500 × 120/100 + 500 × 40/50) / 1.001 = 1000 / 1.001 = 999.000999…,
    # so the fees are 1000 − 999.000999… = 0.999000999…; money kept to 8 places
    (D("0.001"), D("999.00099900"), D("0.99900100"), D("-0.09990010")),
    # 500 / (100 × 1.25) = 4 BTC, 500 / (50 × 1.25) = 8 ETH: 4 × 120 + 8 × 40 = 800
    (D("0.25"), D("800.00"), D("200.00"), D("-20.00")),
])
def test_a_two_pair_backtest_compares_the_wallet_with_the_basket_worked_by_hand(
        tmp_path: Path, fee_rate: D, final: D, fees: D, pct: D) -> None:
    settings = TickSettings(broker=BrokerConfig(fee_rate=fee_rate))
    s = run_backtest("ma_crossover", "BTCUSDT,ETHUSDT", days=2, initial_balance=D(1000), data=_pairs(tmp_path),
                     settings=settings)
    assert s.symbols == ("BTCUSDT", "ETHUSDT") and s.candle_times == 48 and s.candles == 96
    assert (s.first_candle, s.last_candle) == (START + timedelta(hours=52), START + timedelta(hours=99))
    assert {o.symbol for o in s.outcomes} == {"BTCUSDT", "ETHUSDT"} and len(s.outcomes) == 96
    assert s.verified
    assert s.basket is not None
    assert quantize_money(s.basket.final_value) == final and s.basket.fees == fees and s.buy_and_hold_pct == pct
    # one baseline value per candle time: at the second tested hour BTC 100.5, ETH 49.8
    first_shares = {"BTCUSDT": D(500) / (D(100) * (1 + fee_rate)), "ETHUSDT": D(500) / (D(50) * (1 + fee_rate))}
    assert s.basket.quantities == first_shares
    assert s.basket.values[1] == quantize_money(first_shares["BTCUSDT"] * D("100.5")
                                                + first_shares["ETHUSDT"] * D("49.8"))
    report = analyse(s)
    assert len(report.equity) == len(report.hold_equity) == 49  # the start, then one per candle time
    assert report.hold_equity[-1] == final and report.hold.fees == fees
    assert "equal-weight basket" in headline_table([report]).splitlines()[0]
    # each pair's figures are its own closed trades
    assert [p.symbol for p in s.pairs] == ["BTCUSDT", "ETHUSDT"]
    for p in s.pairs:
        mine = [t for t in s.trade_records if t.symbol == p.symbol]
        assert p.trades == len(mine) and p.realized_pnl == sum((t.realized_pnl for t in mine), D(0))
        assert p.fees == sum((t.fees for t in mine), D(0))
    assert (s.pairs[0].buy_and_hold_pct, s.pairs[1].buy_and_hold_pct) == (D("20.00"), D("-20.00"))
    assert sum(p.trades for p in s.pairs) == s.trades


def test_one_pair_keeps_its_plain_buy_and_hold(tmp_path: Path) -> None:
    s = run_backtest("ma_crossover", "BTCUSDT", days=2, initial_balance=D(1000), data=_pairs(tmp_path)["BTCUSDT"])
    assert s.basket is None and s.pairs == () and s.candles == s.candle_times == 48
    assert s.buy_and_hold_pct == D("20.00")  # 100 → 120, no fee: as before several pairs existed


def test_a_plain_file_for_several_pairs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BacktestError, match="SYMBOL=FILE"):
        run_backtest("ma_crossover", "BTCUSDT,ETHUSDT", days=2, initial_balance=D(1000),
                     data=_pairs(tmp_path)["BTCUSDT"])


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_prints_each_pair_and_the_wallet_as_its_trades_add_up(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = _invoke("backtest", "ma_crossover", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--days", "30",
                             "--output", str(out_dir))
    assert code == 0, err
    assert "ma_crossover on BTCUSDT,ETHUSDT 1h: 720 hours × 2 pairs = 1440 candles" in out
    assert "ledger verified  ok" in out and "(equal-weight basket " in out
    trades = list(csv.DictReader((out_dir / "ma_crossover" / "trades.csv").open()))
    by_pair: dict[str, list[dict[str, str]]] = defaultdict(list)
    for t in trades:
        by_pair[t["symbol"]].append(t)
    assert set(by_pair) == {"BTCUSDT", "ETHUSDT"}  # both pairs traded from the one wallet
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("    ")}
    for pair, rows in [*by_pair.items(), ("wallet", trades)]:
        pnl = sum((D(t["realized_pnl"]) for t in rows), D(0))
        fees = sum((D(t["fees"]) for t in rows), D(0))
        wins = sum(1 for t in rows if D(t["realized_pnl"]) - D(t["fees"]) > 0)
        assert lines[pair][1:6] == [format_usd(pnl), format_usd(fees), format_usd(pnl - fees), str(len(rows)),
                                    f"{D(wins) / len(rows) * 100:.1f}%"], pair
    header = next(line for line in out.splitlines() if "equal-weight basket" in line and "ma_crossover" in line)
    assert header.split() == ["ma_crossover", "equal-weight", "basket"]


@pytest.mark.parametrize("command", [["check", "ma_crossover"],
                                     ["optimize", "ma_crossover", "--param", "fast=10:30"]])
def test_the_single_pair_tools_refuse_several_pairs_in_one_line(tmp_path: Path, command: list[str]) -> None:
    code, out, err = _invoke(*command, "--symbol", "BTCUSDT", "--symbol", "ETHUSDT")
    assert code == 2 and out == ""
    assert err == f"error: atb {command[0]} works on one pair at a time, not BTCUSDT,ETHUSDT: give one --symbol " \
                  "(`atb backtest` takes several)\n"
