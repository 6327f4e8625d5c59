"""``atb optimize``: parameter search with optuna on a training window, then validation on data it never saw.

* The candles (the bundled recording, or ``--from/--to``) are split in time: the first ``train_fraction`` (70 %)
  is the **training window**, the rest is **held out**. Every trial is a backtest through the real engine on the
  training window only; optuna's TPE sampler proposes the parameters; the objective is the chosen metric.
* The best parameters are then backtested on the held-out part, whole and in ``folds`` consecutive slices
  (walk-forward validation: each slice only follows what came before it), beside the strategy's defaults and buy
  and hold on the same candles. The report puts in-sample and held-out side by side and says plainly whether the
  result holds up (:func:`verdict`).
* Trials run in ``jobs`` worker processes (two by default: both cores) that share one optuna study in a SQLite
  file, so a search that is stopped resumes where it was with the same command (``--trials`` is the total).

optuna is the ``lab`` extra (``pip install -e '.[lab]'``); it is never bundled into the Lambda.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from chalicelib.bot.backtest import BacktestError, run_backtest
from chalicelib.trading.candles import Candle, format_time
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.trading.strategies import StrategyLoadError, add_strategy_path, strategy_entry
from lab import metrics as m
from lab.params import ParamRange
from lab.report import analyse

#: metric name → (how to read it from Metrics, higher is better)
METRICS = ("sharpe", "sortino", "calmar", "return", "cagr", "profit_factor", "sqn", "expectancy")


class OptimizeError(ValueError):
    """The search cannot run as asked; one line says why."""


def metric_value(x: m.Metrics, metric: str) -> float | None:
    value: Any = {
        "sharpe": x.sharpe, "sortino": x.sortino, "calmar": x.calmar, "return": x.total_return, "cagr": x.cagr,
        "profit_factor": x.profit_factor, "sqn": x.sqn, "expectancy": x.expectancy,
    }[metric]
    return None if value is None else float(value)


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs (picklable): what to search, on which candles, with which storage."""

    strategy: str
    symbol: str
    timeframe: str
    data: str | None
    ranges: tuple[ParamRange, ...]
    fixed: tuple[tuple[str, Any], ...]
    metric: str
    trials: int
    train_start: datetime
    train_end: datetime
    storage: str
    study_name: str
    strategy_paths: tuple[str, ...]
    initial_balance: Decimal
    seed: int | None


@dataclass(frozen=True)
class Result:
    """One column of the report: parameters backtested on one window."""

    label: str
    params: dict[str, Any]
    first: datetime
    last: datetime
    metrics: m.Metrics
    hold: m.Metrics
    candles: int


def _params_from(trial: Any, plan: Plan) -> dict[str, Any]:
    entry = strategy_entry(plan.strategy)
    chosen: dict[str, Any] = dict(plan.fixed)
    for r in plan.ranges:
        if r.kind == "int":
            chosen[r.name] = trial.suggest_int(r.name, r.low, r.high)
        else:
            value = trial.suggest_float(r.name, r.low, r.high)
            default = entry.parameters[r.name]
            chosen[r.name] = Decimal(f"{value:.6f}") if isinstance(default, Decimal) else value
    return chosen


def _typed(plan: Plan, params: dict[str, Any]) -> dict[str, Any]:
    """optuna's stored values back in the parameters' own types."""
    defaults = strategy_entry(plan.strategy).parameters
    out = dict(plan.fixed)
    for name, value in params.items():
        out[name] = Decimal(f"{value:.6f}") if isinstance(defaults[name], Decimal) else value
    return out


def backtest_window(plan: Plan, feed: ReplayFeed, params: dict[str, Any], start: datetime,
                    end: datetime | None) -> tuple[m.Metrics, m.Metrics, int, datetime, datetime]:
    summary = run_backtest(plan.strategy, plan.symbol, plan.timeframe, start=start, end=end,
                           initial_balance=plan.initial_balance, feed=feed, params=params)
    report = analyse(summary)
    return report.strategy, report.hold, summary.candles, summary.first_candle, summary.last_candle


def _worker(plan: Plan, worker: int, share: int) -> None:
    """One process's ``share`` of the trials (fewer if the study reaches ``plan.trials`` finished ones first)."""
    import logging

    import optuna

    from chalicelib.bot.observability import use_plain_logs

    use_plain_logs(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for path in plan.strategy_paths:
        add_strategy_path(path)
    feed = ReplayFeed(Path(plan.data) if plan.data else None, symbol=plan.symbol, timeframe=plan.timeframe)
    seed = None if plan.seed is None else plan.seed + worker
    study = optuna.load_study(study_name=plan.study_name, storage=plan.storage,
                              sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial: Any) -> float:
        try:
            params = _params_from(trial, plan)
            metrics, _, _, _, _ = backtest_window(plan, feed, params, plan.train_start, plan.train_end)
        except StrategyLoadError as exc:  # the strategy refused this combination (e.g. fast >= slow)
            trial.set_user_attr("refused", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        value = metric_value(metrics, plan.metric)
        trial.set_user_attr("trades", metrics.trades)
        if value is None:
            trial.set_user_attr("refused", f"{plan.metric} undefined (no trades or no variation)")
            raise optuna.TrialPruned(f"{plan.metric} undefined")
        return value

    def progress(study: Any, trial: Any) -> None:
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        done = [t for t in finished if t.value is not None]
        best = max(done, key=lambda t: t.value) if done else None
        shown = f"{trial.value:.4f}" if trial.value is not None else f"skipped ({trial.user_attrs.get('refused')})"
        best_text = (f"best {best.value:.4f} at {', '.join(f'{k}={v}' for k, v in best.params.items())}"
                     if best else "no best yet")
        sys.stderr.write(f"  trial {len(finished)}/{plan.trials}: {plan.metric} {shown}; {best_text}\n")
        sys.stderr.flush()

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    study.optimize(objective, n_trials=share, callbacks=[
        optuna.study.MaxTrialsCallback(plan.trials, states=states), progress])


def study_name(strategy: str, symbol: str, timeframe: str, ranges: Sequence[ParamRange], fixed: dict[str, Any],
               metric: str, train_start: datetime, train_end: datetime) -> str:
    """The same search (strategy, market, ranges, metric, window) resumes the same study; another starts anew."""
    key = repr((strategy, symbol, timeframe, [(r.name, r.low, r.high) for r in ranges], sorted(fixed.items()),
                metric, train_start.isoformat(), train_end.isoformat()))
    return f"{strategy}-{symbol}-{metric}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def split(candles: Sequence[Candle], train_fraction: float, folds: int) -> tuple[int, list[tuple[int, int]]]:
    """Index where the held-out part starts and the ``(start, stop)`` of each walk-forward fold."""
    if not 0.1 <= train_fraction <= 0.9:
        raise OptimizeError("--train-fraction must be between 0.1 and 0.9")
    cut = int(len(candles) * train_fraction)
    held = len(candles) - cut
    if folds < 1 or held // folds < 24:
        raise OptimizeError(f"{held} held-out candles cannot make {folds} folds of at least 24 candles")
    bounds = [cut + held * k // folds for k in range(folds + 1)]
    return cut, list(itertools.pairwise(bounds))


@dataclass(frozen=True)
class Outcome:
    study_name: str
    trials_done: int
    best_params: dict[str, Any]
    best_value: float
    in_sample: Result
    held_out: Result
    folds: tuple[Result, ...]
    defaults_held_out: Result
    holds_up: bool
    verdict: str


def verdict(metric: str, in_sample: float | None, held_out: float | None, folds: Sequence[float | None]) -> tuple[
        bool, str]:
    """Holds up when the held-out metric is positive, at least half the in-sample one, and positive in at least
    half of the walk-forward folds; otherwise says which of these failed."""
    problems = []
    if held_out is None or held_out <= 0:
        problems.append(f"held-out {metric} is {'undefined' if held_out is None else f'{held_out:.2f}'}, not "
                        "positive")
    elif in_sample is not None and in_sample > 0 and held_out < in_sample / 2:
        problems.append(f"held-out {metric} {held_out:.2f} is less than half the in-sample {in_sample:.2f}")
    positive = sum(1 for f in folds if f is not None and f > 0)
    if positive * 2 < len(folds):
        problems.append(f"{metric} is positive in only {positive} of {len(folds)} walk-forward folds")
    if problems:
        return False, "DOES NOT HOLD UP on data the search never saw: " + "; ".join(problems) + "."
    return True, (f"holds up: held-out {metric} {held_out:.2f} against {in_sample:.2f} in-sample, positive in "
                  f"{positive} of {len(folds)} folds.")


def run(plan: Plan, *, jobs: int, candles: Sequence[Candle], cut: int, folds: list[tuple[int, int]]) -> Outcome:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=plan.study_name, storage=plan.storage, direction="maximize",
                                load_if_exists=True)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    if finished:
        sys.stderr.write(f"Resuming study {plan.study_name}: {len(finished)} of {plan.trials} trials already done\n")
    remaining = plan.trials - len(finished)
    if remaining > 0:
        jobs = min(jobs, remaining)
        shares = [remaining // jobs + (1 if w < remaining % jobs else 0) for w in range(jobs)]
        if jobs == 1:
            _worker(plan, 0, remaining)
        else:
            context = multiprocessing.get_context("spawn")
            procs = [context.Process(target=_worker, args=(plan, w, shares[w]), daemon=True) for w in range(jobs)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            if any(p.exitcode != 0 for p in procs):
                raise OptimizeError("a search worker failed; run again to resume (the finished trials are kept)")
    study = optuna.load_study(study_name=plan.study_name, storage=plan.storage)
    done = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
    if not done:
        raise OptimizeError(f"no trial gave a {plan.metric}: every combination was refused or made no trade")
    best = max(done, key=lambda t: t.value if t.value is not None else float("-inf"))
    params = _typed(plan, dict(best.params))
    feed = ReplayFeed(Path(plan.data) if plan.data else None, symbol=plan.symbol, timeframe=plan.timeframe)

    def result(label: str, chosen: dict[str, Any], start: int, stop: int | None) -> Result:
        end = (candles[stop].open_time if stop is not None and stop < len(candles)
               else candles[-1].open_time + timedelta(seconds=1))
        try:
            x, hold, count, first, last = backtest_window(plan, feed, chosen, candles[start].open_time, end)
        except (BacktestError, StrategyLoadError) as exc:
            raise OptimizeError(str(exc)) from None
        return Result(label, chosen, first, last, x, hold, count)

    in_sample = result("in-sample", params, 0, cut)
    held_out = result("held-out", params, cut, None)
    fold_results = tuple(result(f"fold {i}", params, a, b) for i, (a, b) in enumerate(folds, 1))
    defaults = result("defaults, held-out", dict(plan.fixed), cut, None)
    ok, text = verdict(plan.metric, metric_value(in_sample.metrics, plan.metric),
                       metric_value(held_out.metrics, plan.metric),
                       [metric_value(f.metrics, plan.metric) for f in fold_results])
    return Outcome(plan.study_name, len([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]),
                   params, float(best.value or 0), in_sample, held_out, fold_results, defaults, ok, text)


def report_table(outcome: Outcome, metric: str) -> str:
    """In-sample and held-out side by side (then each fold, the defaults and buy and hold on the held-out part)."""
    columns = [outcome.in_sample, outcome.held_out, *outcome.folds, outcome.defaults_held_out]

    def pct(v: Decimal | float | None) -> str:
        return "—" if v is None else f"{v * 100:+.2f}%"

    def num(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    rows: list[tuple[str, list[str]]] = [
        ("window", [f"{format_time(c.first)[:10]}→{format_time(c.last)[:10]}" for c in columns]),
        ("candles", [str(c.candles) for c in columns]),
        (metric, [num(metric_value(c.metrics, metric)) for c in columns]),
        ("total return", [pct(c.metrics.total_return) for c in columns]),
        ("buy and hold", [pct(c.hold.total_return) for c in columns]),
        ("max drawdown", [f"{c.metrics.max_drawdown.depth * 100:.2f}%" for c in columns]),
        *([("Sharpe", [num(c.metrics.sharpe) for c in columns])] if metric != "sharpe" else []),
        ("trades", [str(c.metrics.trades) for c in columns]),
        ("win rate", ["—" if c.metrics.win_rate is None else f"{c.metrics.win_rate * 100:.1f}%" for c in columns]),
    ]
    titles = [c.label for c in columns]
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(t), *(len(r[1][i]) for r in rows)) for i, t in enumerate(titles)]
    lines = [" " * w0 + "  " + "  ".join(t.rjust(w) for t, w in zip(titles, widths, strict=True))]
    lines += [label.ljust(w0) + "  " + "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
              for label, values in rows]
    return "\n".join(lines)


def outcome_dict(outcome: Outcome, metric: str) -> dict[str, Any]:
    from lab.report import metrics_dict

    def column(c: Result) -> dict[str, Any]:
        return {"label": c.label, "parameters": {k: str(v) for k, v in c.params.items()}, "first_candle": c.first,
                "last_candle": c.last, "candles": c.candles, "metrics": metrics_dict(c.metrics),
                "buy_and_hold": metrics_dict(c.hold)}

    return {
        "study": outcome.study_name, "trials": outcome.trials_done, "metric": metric,
        "best_parameters": {k: str(v) for k, v in outcome.best_params.items()},
        "in_sample": column(outcome.in_sample), "held_out": column(outcome.held_out),
        "folds": [column(f) for f in outcome.folds], "defaults_held_out": column(outcome.defaults_held_out),
        "holds_up": outcome.holds_up, "verdict": outcome.verdict,
    }
