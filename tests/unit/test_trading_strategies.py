"""Strategies: pure, registered, wrapped so a failing one makes the session hold, and free of look-ahead."""

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from chalicelib.trading.candles import Candle
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.position import PositionView
from chalicelib.trading.strategies import (
    EnterLong,
    Exit,
    Hold,
    StrategyError,
    UnknownStrategyError,
    available_strategies,
    decide_safely,
    get_strategy,
)
from chalicelib.trading.strategies.ma_crossover import MaCrossover
from chalicelib.trading.strategies.ml_basic import FEATURES, WEIGHTS_PATH, LogisticModel, MlBasic, load_model
from lab.train_ml_basic import main as train_main

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
REAL = ReplayFeed().all_candles("BTCUSDT", "1h")


def candles_from_closes(closes) -> list[Candle]:
    """Each candle opens at the previous close, with high = close + 1 and low = close - 1."""
    out, previous = [], D(closes[0])
    for i, close in enumerate(closes):
        c = D(close)
        out.append(Candle(T0 + i * HOUR, previous, max(previous, c) + 1, min(previous, c) - 1, c, D(1)))
        previous = c
    return out


def open_position(at: datetime = T0) -> PositionView:
    return PositionView(D(100), D(1), D(90), D(120), at)


# ---------------------------------------------------------------------------------------------- registry


def test_both_strategies_are_registered_by_name():
    assert available_strategies() == ["ma_crossover", "ml_basic"]
    assert get_strategy("ma_crossover").name == "ma_crossover"
    assert get_strategy("ml_basic").name == "ml_basic"


def test_an_unknown_strategy_name_lists_the_ones_there_are():
    with pytest.raises(UnknownStrategyError, match=r"unknown strategy 'nope' \(available: ma_crossover, ml_basic\)"):
        get_strategy("nope")


# ----------------------------------------------------------------------------------------- the wrapper


class Exploding:
    name, warmup = "exploding", 1

    def decide(self, candles, position):
        raise ZeroDivisionError("division by zero\nsecond line")


class Fixed:
    name, warmup = "fixed", 1

    def __init__(self, decision):
        self.decision = decision

    def decide(self, candles, position):
        return self.decision


def test_a_strategy_that_raises_becomes_a_one_line_strategy_error():
    with pytest.raises(StrategyError) as info:
        decide_safely(Exploding(), REAL[:5], None)
    assert str(info.value) == "strategy exploding failed: ZeroDivisionError: division by zero"


def test_too_few_candles_means_hold_without_asking_the_strategy():
    class SlowToWarmUp(Exploding):
        warmup = 10

    decision = decide_safely(SlowToWarmUp(), REAL[:9], None)
    assert isinstance(decision, Hold)
    assert "warming up (9/10" in decision.reason


@pytest.mark.parametrize(
    ("decision", "position", "problem"),
    [
        (EnterLong(stop_loss=D(30000), take_profit=D(20000)), None, "stop_loss 30000 must be positive and below"),
        (EnterLong(stop_loss=D(1), take_profit=D(2)), None, "take_profit 2 must be above the close"),
        (EnterLong(stop_loss=D(1), take_profit=D(10**6)), open_position(), "already open"),
        (Exit(), None, "no open position"),
        ("buy!", None, "returned str, not a Decision"),
    ],
)
def test_nonsense_decisions_are_reported_rather_than_acted_on(decision, position, problem):
    # REAL[4].close is 16,6xx: a stop of 30,000 is above it and a target of 2 below it.
    with pytest.raises(StrategyError, match=problem):
        decide_safely(Fixed(decision), REAL[:5], position)


# ------------------------------------------------------------------------------------------ ma_crossover


def test_ma_crossover_enters_when_the_fast_average_crosses_above_the_slow_one():
    # fast 2, slow 3, ATR 2.  closes 10, 10, 10, 9, 12.
    # before the last candle: fast (10 + 9) / 2 = 9.5 <= slow (10 + 10 + 9) / 3 = 9.67
    # now:                    fast (9 + 12) / 2 = 10.5 > slow (10 + 9 + 12) / 3 = 10.33  -> cross up
    # true ranges of the last two candles: candle 9 (open 10, high 11, low 8, prev close 10) -> 3;
    #   candle 12 (open 9, high 13, low 8, prev close 9) -> 5.  ATR(2) = (3 + 5) / 2 = 4.
    # stop = 12 - 2 * 4 = 4, target = 12 + 4 * 4 = 28.
    strategy = MaCrossover(fast=2, slow=3, atr_period=2)
    decision = decide_safely(strategy, candles_from_closes([10, 10, 10, 9, 12]), None)
    assert isinstance(decision, EnterLong)
    assert (decision.stop_loss, decision.take_profit) == (D(4), D(28))


def test_ma_crossover_holds_without_a_fresh_cross_and_exits_when_fast_falls_below_slow():
    strategy = MaCrossover(fast=2, slow=3, atr_period=2)
    # rising all along: fast above slow on both candles, no fresh cross -> hold
    assert isinstance(decide_safely(strategy, candles_from_closes([10, 11, 12, 13, 14]), None), Hold)
    # falling: fast (11 + 10) / 2 = 10.5 < slow (12 + 11 + 10) / 3 = 11 -> exit the open position
    decision = decide_safely(strategy, candles_from_closes([13, 13, 12, 11, 10]), open_position())
    assert isinstance(decision, Exit)


# ---------------------------------------------------------------------------------------------- ml_basic


def test_ml_basic_weights_are_plain_json_for_the_documented_features():
    data = json.loads(WEIGHTS_PATH.read_text())
    assert tuple(data["features"]) == FEATURES
    model = load_model()
    assert 0.5 <= model.exit_threshold <= model.enter_threshold < 1
    assert data["trained_on"]["last_candle"] < "2024-07"  # trained on the earlier 70% only


def test_ml_basic_loads_without_numpy():
    code = (
        "import sys; from chalicelib.trading.strategies import get_strategy; get_strategy('ml_basic'); "
        "print('numpy' in sys.modules, 'ccxt' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_ml_basic_enters_above_its_threshold_with_an_atr_stop_and_target():
    # A model whose only weight is on ret_1 (standardised with mean 0, std 1): p = sigmoid(10 * ret_1).
    flat = LogisticModel(FEATURES, (0.0,) * 12, (1.0,) * 12, (10.0,) + (0.0,) * 11, 0.0, 0.6, 0.4, 4)
    strategy = MlBasic(model=flat, atr_period=2)
    closes = [100] * 72 + [110]  # last return ln(1.1) = 0.0953 -> p = sigmoid(0.953) = 0.722 > 0.6
    candles = candles_from_closes(closes)
    assert strategy.probability(candles) == pytest.approx(0.7217, abs=1e-4)
    decision = decide_safely(strategy, candles, None)
    # last two true ranges: flat candle 100 -> 2 (high 101, low 99); 100 -> 110: high 111, low 99 -> 12.
    # ATR(2) = 7; stop = 110 - 2 * 7 = 96; target = 110 + 3 * 7 = 131.
    assert isinstance(decision, EnterLong)
    assert (decision.stop_loss, decision.take_profit) == (D(96), D(131))
    # the same move down gives p = sigmoid(-0.953) = 0.278 < 0.4: an open position is closed
    down = candles_from_closes([100] * 72 + [90])
    assert isinstance(decide_safely(strategy, down, open_position()), Exit)


def test_the_training_command_trains_on_the_earlier_part_and_writes_loadable_weights(tmp_path, capsys):
    out = tmp_path / "weights.json"
    assert train_main(["--out", str(out), "--no-backtest"]) == 0
    printed = capsys.readouterr().out
    assert "held_out: rows=" in printed and "auc=" in printed
    model = LogisticModel.from_json(json.loads(out.read_text()))
    assert model.enter_threshold >= model.exit_threshold
    # deterministic: retraining gives the shipped weights
    assert model == load_model()


def test_the_trainers_held_out_evaluation_is_the_engines_backtest_one_candle_loop() -> None:
    from chalicelib.bot.backtest import run_backtest
    from chalicelib.trading.feeds import BUNDLED_CSV
    from lab.train_ml_basic import held_out_table

    start = REAL[-400]
    table = held_out_table(load_model(), BUNDLED_CSV, start, D(1000))
    for name, line in zip(("ml_basic", "ma_crossover"), table[1:3], strict=True):
        s = run_backtest(name, start=start.open_time, initial_balance=D(1000))
        assert line.split() == [name, f"${s.final_equity:,.2f}", f"{s.return_pct:.2f}%",
                                f"{s.max_drawdown_pct:.2f}%", str(s.trades), f"${s.fees:,.2f}"]
    hold = (REAL[-1].close / start.close - 1) * 100
    assert table[3].split()[2] == f"{hold:.2f}%"


# ----------------------------------------------------------------------------------------- no look-ahead


@pytest.mark.parametrize("name", ["ma_crossover", "ml_basic"])
def test_decisions_up_to_candle_t_do_not_depend_on_what_comes_after(name):
    """Decide at every t over 400 real candles, once with the real future and once with a made-up one."""
    strategy = get_strategy(name)
    start, end = 9000, 9400
    rng = random.Random(7)
    invented, price = list(REAL[:end]), REAL[end - 1].close
    for i in range(200):  # a wild random walk after `end`
        price = max(D(1), price * D(str(round(rng.uniform(0.8, 1.25), 4))))
        invented.append(Candle(REAL[end - 1].open_time + (i + 1) * HOUR, price, price * 2, price / 2, price, D(1)))
    real_future = list(REAL[: end + 200])
    position, kinds = None, set()
    for t in range(start, end):
        a = decide_safely(strategy, real_future[: t + 1], position)
        b = decide_safely(strategy, invented[: t + 1], position)
        c = decide_safely(strategy, REAL[t - strategy.warmup + 1 : t + 1], position)  # only the warm-up window
        assert a == b == c
        kinds.add(a.kind)
        if isinstance(a, EnterLong):
            position = PositionView(REAL[t].close, D(1), a.stop_loss, a.take_profit, REAL[t].open_time)
        elif isinstance(a, Exit):
            position = None
    assert {"enter_long", "exit"} <= kinds  # the stretch exercises entries and exits, not just holds


def test_strategies_are_pure_the_same_input_gives_the_same_decision():
    for name in available_strategies():
        strategy = get_strategy(name)
        window = REAL[5000 : 5000 + strategy.warmup]
        assert decide_safely(strategy, window, None) == decide_safely(strategy, window, None)
