"""Train ``ml_basic`` on the earlier part of the bundled candles and write its weights.

    python -m lab.train_ml_basic [--data CSV] [--train-fraction 0.7] [--l2 0.01] [--out FILE] [--no-backtest]

Part of the lab, not of the Lambda bundle: a deployed bot only reads the weights file.

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
6. writes ``ml_basic_weights.json`` and prints log loss, accuracy and AUC on both parts, then the held-out
   backtest of ``ml_basic`` (with the new weights) and ``ma_crossover`` through the engine itself — the one
   candle loop, the same as ``atb backtest`` — beside buy and hold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from chalicelib.money import format_usd
from chalicelib.trading.candles import Candle, format_time
from chalicelib.trading.feeds import BUNDLED_CSV, read_candles_csv
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


# ------------------------------------------------------------------------------- held-out evaluation


def held_out_table(model: LogisticModel, data: Path, start: Candle, initial: Decimal) -> list[str]:
    """``ml_basic`` with the new model and ``ma_crossover`` from ``start`` to the end of ``data``, through the
    engine (``chalicelib.bot.backtest``: what ``atb backtest`` runs), beside buy and hold."""
    import logging

    from chalicelib.bot.backtest import run_backtest
    from chalicelib.bot.observability import use_plain_logs
    from chalicelib.trading.feeds import ReplayFeed
    from lab.report import analyse

    use_plain_logs(logging.ERROR)
    feed = ReplayFeed(data)
    rows = [f"{'strategy':<14}{'final':>14}{'return':>10}{'max dd':>10}{'trades':>8}{'fees':>12}"]
    hold = None
    for strategy in (MlBasic(model=model), MaCrossover()):
        summary = run_backtest(strategy, feed.symbol, feed.timeframe, start=start.open_time, initial_balance=initial,
                               feed=feed)
        report = analyse(summary)
        hold = report.hold
        rows.append(f"{summary.strategy:<14}{format_usd(summary.final_equity):>14}{summary.return_pct:>9.2f}%"
                    f"{summary.max_drawdown_pct:>9.2f}%{summary.trades:>8}{format_usd(summary.fees):>12}")
    assert hold is not None
    rows.append(f"{'buy_and_hold':<14}{format_usd(hold.end_equity):>14}{hold.total_return * 100:>9.2f}%"
                f"{hold.max_drawdown.depth * 100:>9.2f}%{'—':>8}{'—':>12}")
    return rows


# ----------------------------------------------------------------------------------------------- command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.train_ml_basic")
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
        say(f"\nheld-out backtest through the engine (as `atb backtest`) from {format_time(candles[split].open_time)}, "
            f"{format_usd(initial)} start, fees, slippage and risk rules as in live trading:")
        for line in held_out_table(model, args.data, candles[split], initial):
            say(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
