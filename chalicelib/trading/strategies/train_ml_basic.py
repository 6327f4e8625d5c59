"""Train ``ml_basic`` on the earlier part of the bundled candles and write its weights.

    python -m chalicelib.trading.strategies.train_ml_basic [--data CSV] [--train-fraction 0.7] [--l2 0.01]

What it does, in order:

1. reads the candles (the bundled BTCUSDT 1h file by default) and computes the features of
   :mod:`chalicelib.trading.strategies.ml_basic` for every candle with a full window;
2. labels each row ``1`` if the close ``horizon`` (4) candles later is higher, else ``0``;
3. splits chronologically: the first ``train_fraction`` (70%) of the candles train, the rest is never seen.
   Training rows whose label would peek into the held-out part are dropped;
4. standardises features with the training mean/std and fits an L2-regularised logistic regression by
   Newton's method (exact, deterministic, pure Python: 13 parameters, ~12k rows, a few seconds);
5. picks the thresholds from the TRAINING predictions only: ``enter_threshold`` = their 85th percentile,
   ``exit_threshold`` = their median; the model enters on its most confident 15% of hours and leaves when
   its view falls below its usual level;
6. writes ``ml_basic_weights.json`` and prints log loss, accuracy and AUC on both parts, then a rough
   held-out backtest (this module's own loop over the paper broker and risk rules, not the persistent
   engine) of ``ml_basic`` against ``ma_crossover`` and buy-and-hold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from chalicelib.money import format_usd
from chalicelib.trading.broker import (
    BrokerConfig,
    check_exit,
    close_trade,
    exit_fill,
    market_buy,
    market_sell,
)
from chalicelib.trading.candles import Candle, format_time
from chalicelib.trading.feeds import BUNDLED_CSV, read_candles_csv
from chalicelib.trading.position import PositionView
from chalicelib.trading.risk import can_open, size_position, updated_peak
from chalicelib.trading.strategies.base import EnterLong, Exit, Strategy, decide_safely
from chalicelib.trading.strategies.ma_crossover import MaCrossover
from chalicelib.trading.strategies.ml_basic import (
    FEATURES,
    WEIGHTS_PATH,
    WINDOW,
    LogisticModel,
    MlBasic,
    feature_vector,
    sigmoid,
)

HORIZON = 4
ENTER_QUANTILE = 0.85
EXIT_QUANTILE = 0.50


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------- the data


def build_rows(candles: Sequence[Candle], horizon: int) -> tuple[list[int], list[list[float]], list[int]]:
    """(candle index, raw features, label) for every candle with a full window and a known future."""
    o = [float(c.open) for c in candles]
    h = [float(c.high) for c in candles]
    lo = [float(c.low) for c in candles]
    c = [float(x.close) for x in candles]
    v = [float(x.volume) for x in candles]
    index, rows, labels = [], [], []
    for t in range(WINDOW - 1, len(candles) - horizon):
        s = slice(t - WINDOW + 1, t + 1)
        rows.append(feature_vector(o[s], h[s], lo[s], c[s], v[s]))
        labels.append(1 if c[t + horizon] > c[t] else 0)
        index.append(t)
    return index, rows, labels


def column_stats(rows: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    n, d = len(rows), len(rows[0])
    mean = [sum(r[j] for r in rows) / n for j in range(d)]
    std = [math.sqrt(sum((r[j] - mean[j]) ** 2 for r in rows) / n) or 1.0 for j in range(d)]
    return mean, std


# -------------------------------------------------------------------------------------------- the model


def solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the system is small and positive definite)."""
    n = len(vector)
    a = [[*row, vector[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            for k in range(col, n + 1):
                a[r][k] -= factor * a[col][k]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (a[r][n] - sum(a[r][k] * x[k] for k in range(r + 1, n))) / a[r][r]
    return x


def fit_logistic(
    z: Sequence[Sequence[float]], y: Sequence[int], l2: float, iterations: int = 25
) -> tuple[list[float], float]:
    """Minimise mean log loss + (l2 / 2) * |w|^2 (bias not penalised) by Newton's method."""
    n, d = len(z), len(z[0])
    beta = [0.0] * (d + 1)  # bias last
    for _ in range(iterations):
        grad = [0.0] * (d + 1)
        hess = [[0.0] * (d + 1) for _ in range(d + 1)]
        for row, label in zip(z, y, strict=True):
            x = [*row, 1.0]
            p = sigmoid(sum(b * xi for b, xi in zip(beta, x, strict=True)))
            err, weight = p - label, p * (1 - p)
            for i in range(d + 1):
                grad[i] += err * x[i]
                wx = weight * x[i]
                hrow = hess[i]
                for k in range(i, d + 1):
                    hrow[k] += wx * x[k]
        for i in range(d + 1):
            grad[i] /= n
            for k in range(i, d + 1):
                hess[i][k] /= n
                hess[k][i] = hess[i][k]
        for i in range(d):
            grad[i] += l2 * beta[i]
            hess[i][i] += l2
        step = solve(hess, grad)
        beta = [b - s for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < 1e-10:
            break
    return beta[:d], beta[d]


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def classification_metrics(probabilities: Sequence[float], labels: Sequence[int]) -> dict[str, float]:
    n = len(labels)
    eps = 1e-12
    log_loss = (
        -sum(
            math.log(max(p, eps)) if y else math.log(max(1 - p, eps))
            for p, y in zip(probabilities, labels, strict=True)
        )
        / n
    )
    accuracy = sum((p > 0.5) == bool(y) for p, y in zip(probabilities, labels, strict=True)) / n
    # AUC by ranks (Mann-Whitney U), ties share their average rank.
    order = sorted(range(n), key=lambda i: probabilities[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and probabilities[order[j + 1]] == probabilities[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    positives = sum(labels)
    negatives = n - positives
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives) if positives and negatives else 0.5
    return {
        "rows": n,
        "base_rate_up": round(positives / n, 4),
        "log_loss": round(log_loss, 5),
        "accuracy": round(accuracy, 4),
        "auc": round(auc, 4),
    }


# ---------------------------------------------------------------------------------------- rough backtest


@dataclass
class BacktestResult:
    name: str
    final_balance: Decimal
    return_pct: Decimal
    max_drawdown_pct: Decimal
    trades: int
    fees: Decimal


def backtest(strategy: Strategy, candles: Sequence[Candle], start: int, initial: Decimal) -> BacktestResult:
    """Candle by candle from ``start``: stops/targets first, then the strategy on data up to that candle."""
    broker = BrokerConfig()
    cash, position, entry_fee = initial, None, Decimal(0)
    peak_balance = initial
    peak_equity, max_dd = initial, Decimal(0)
    trades, fees = 0, Decimal(0)
    for t in range(start, len(candles)):
        candle = candles[t]
        if position is not None:
            signal = check_exit(position, candle)
            if signal is not None:
                sell = exit_fill(position, signal, broker)
                cash += sell.notional - sell.fee
                fees += sell.fee
                trades += 1
                close_trade(position, sell, entry_fee)
                position = None
        history = candles[max(0, t - strategy.warmup + 1) : t + 1]
        decision = decide_safely(strategy, history, position)
        if isinstance(decision, Exit) and position is not None:
            sell = market_sell(candle, position.quantity, broker)
            cash += sell.notional - sell.fee
            fees += sell.fee
            trades += 1
            position = None
        elif isinstance(decision, EnterLong) and position is None and can_open(cash, peak_balance):
            price = market_buy(candle, Decimal(1), broker).price
            sizing = size_position(cash, cash, price, decision.stop_loss, fee_rate=broker.fee_rate)
            if sizing.quantity > 0:
                buy = market_buy(candle, sizing.quantity, broker)
                cash -= buy.notional + buy.fee
                fees += buy.fee
                entry_fee = buy.fee
                position = PositionView(
                    buy.price, buy.quantity, decision.stop_loss, decision.take_profit, candle.open_time
                )
        balance = cash + (position.cost if position else Decimal(0))
        peak_balance = updated_peak(peak_balance, balance)
        equity = cash + (position.quantity * candle.close if position else Decimal(0))
        peak_equity = max(peak_equity, equity)
        max_dd = max(max_dd, (peak_equity - equity) / peak_equity)
    if position is not None:  # mark out at the last close so every strategy ends in cash
        sell = market_sell(candles[-1], position.quantity, broker)
        cash += sell.notional - sell.fee
        fees += sell.fee
        trades += 1
    return BacktestResult(strategy.name, cash, (cash / initial - 1) * 100, max_dd * 100, trades, fees)


def buy_and_hold(candles: Sequence[Candle], start: int, initial: Decimal) -> BacktestResult:
    broker = BrokerConfig()
    price = market_buy(candles[start], Decimal(1), broker).price
    quantity = (initial / (price * (1 + broker.fee_rate))).quantize(Decimal("1e-12"), rounding="ROUND_DOWN")
    buy = market_buy(candles[start], quantity, broker)
    cash = initial - buy.notional - buy.fee
    peak, max_dd = initial, Decimal(0)
    for candle in candles[start + 1 :]:
        equity = cash + quantity * candle.close
        peak = max(peak, equity)
        max_dd = max(max_dd, (peak - equity) / peak)
    sell = market_sell(candles[-1], quantity, broker)
    final = cash + sell.notional - sell.fee
    return BacktestResult("buy_and_hold", final, (final / initial - 1) * 100, max_dd * 100, 2, buy.fee + sell.fee)


# ----------------------------------------------------------------------------------------------- command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.trading.strategies.train_ml_basic")
    parser.add_argument("--data", type=Path, default=BUNDLED_CSV, help="candle CSV (default: bundled BTCUSDT 1h)")
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--l2", type=float, default=0.01, help="L2 penalty on the weights")
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--no-backtest", action="store_true", help="skip the held-out backtest")
    args = parser.parse_args(argv)

    candles = read_candles_csv(args.data)
    split = int(len(candles) * args.train_fraction)
    index, rows, labels = build_rows(candles, HORIZON)
    train = [i for i, t in enumerate(index) if t + HORIZON < split]
    test = [i for i, t in enumerate(index) if t >= split]
    say(
        f"data: {args.data.name}, {len(candles)} candles, {format_time(candles[0].open_time)} .. "
        f"{format_time(candles[-1].open_time)}"
    )
    say(
        f"train: candles [0, {split}) up to {format_time(candles[split - 1].open_time)}, {len(train)} rows; "
        f"held out: {len(candles) - split} candles, {len(test)} rows"
    )

    mean, std = column_stats([rows[i] for i in train])
    draft = LogisticModel(FEATURES, tuple(mean), tuple(std), (0.0,) * len(FEATURES), 0.0, 0.5, 0.5, HORIZON)
    z_train = [draft.standardise(rows[i]) for i in train]
    weights, bias = fit_logistic(z_train, [labels[i] for i in train], args.l2)
    fitted = LogisticModel(FEATURES, tuple(mean), tuple(std), tuple(weights), bias, 0.5, 0.5, HORIZON)

    p_train = [fitted.probability(rows[i]) for i in train]
    p_test = [fitted.probability(rows[i]) for i in test]
    enter, exit_ = quantile(p_train, ENTER_QUANTILE), quantile(p_train, EXIT_QUANTILE)
    metrics = {
        "train": classification_metrics(p_train, [labels[i] for i in train]),
        "held_out": classification_metrics(p_test, [labels[i] for i in test]),
    }
    model = LogisticModel(
        FEATURES,
        tuple(mean),
        tuple(std),
        tuple(weights),
        bias,
        enter,
        exit_,
        HORIZON,
        extra={
            "l2": args.l2,
            "trained_on": {
                "data": args.data.name,
                "first_candle": format_time(candles[0].open_time),
                "last_candle": format_time(candles[split - 1].open_time),
                "rows": len(train),
                "enter_threshold_rule": f"{ENTER_QUANTILE:.0%} quantile of training probabilities",
                "exit_threshold_rule": f"{EXIT_QUANTILE:.0%} quantile of training probabilities",
            },
            "metrics": metrics,
        },
    )
    args.out.write_text(json.dumps(model.to_json(), indent=2) + "\n", encoding="utf-8")
    say(f"wrote {args.out}")
    say(
        "weights: " + ", ".join(f"{n}={w:+.4f}" for n, w in zip(FEATURES, weights, strict=True)) + f", bias={bias:+.4f}"
    )
    say(f"thresholds: enter p > {enter:.4f}, exit p < {exit_:.4f}")
    for part, m in metrics.items():
        say(f"{part:>9}: " + ", ".join(f"{k}={v}" for k, v in m.items()))
    hits = [labels[i] for i, p in zip(test, p_test, strict=True) if p > enter]
    if hits:
        say(
            f"held out: p > enter threshold on {len(hits)} rows, up {sum(hits) / len(hits):.1%} of the time "
            f"(base rate {metrics['held_out']['base_rate_up']:.1%})"
        )

    if not args.no_backtest:
        initial = Decimal(1000)
        say(
            f"\nheld-out backtest from {format_time(candles[split].open_time)}, {format_usd(initial)} start, "
            "fee 0.1%, slippage 5 bps, 10% position cap, 2% risk, 20% drawdown stop:"
        )
        results = [
            backtest(MlBasic(model=model), candles, split, initial),
            backtest(MaCrossover(), candles, split, initial),
            buy_and_hold(candles, split, initial),
        ]
        say(f"{'strategy':<14}{'final':>14}{'return':>10}{'max dd':>10}{'trades':>8}{'fees':>12}")
        for r in results:
            say(
                f"{r.name:<14}{format_usd(r.final_balance):>14}{r.return_pct:>9.2f}%{r.max_drawdown_pct:>9.2f}%"
                f"{r.trades:>8}{format_usd(r.fees):>12}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
