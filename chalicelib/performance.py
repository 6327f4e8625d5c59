"""Performance attribution (issue 13): what each strategy, or each symbol, earned from the trades it closed.

``GET /api/performance`` and ``atb report`` both call :func:`read_report`; neither computes anything itself.

The figures of a group are over its **closed trades** whose ``market_time`` (the close of the candle they closed in)
falls in the window ``[start, end)``; a trade belongs to the strategy that **opened** its position (recorded on the
trade with the version of its parameters or model), so a strategy switch never moves a trade to the new strategy.

* ``realized_pnl``: Σ gross P&L, (exit − entry) × quantity; ``fees``: Σ entry and exit fees; ``net_pnl`` = the two's
  difference;
* ``wins``: trades with net P&L > 0; ``losses``: the rest (net ≤ 0), so wins + losses = trades (the backtest's and
  the lab's rule); ``win_rate`` = wins / trades (a fraction), null without trades;
* ``average_win`` / ``average_loss``: mean net P&L of the wins / of the losses (money scale), null without any;
* ``contribution`` (time-weighted): net P&L / **Ē**, the account's average equity over the window — the mean, over
  the distinct candle closes the account applied in the window, of its equity after that close (the tick row of
  the last candle applied at that market time). Candles are evenly spaced, so Ē weights every hour alike: money
  deposited half-way through counts for half the window (not fully, as with the equity at the end; nor not at
  all, as with the equity at the start). Contributions add up across groups to the total's (up to their rounding).
  Ē is rounded to the money scale (reported as ``average_equity``) and each contribution is net / Ē rounded
  half-even to 18 places, so anyone can check it from the report. Null when the window holds no candle with a
  recorded equity, or Ē ≤ 0. Unrealised P&L of positions still open is in no figure here (``GET /api/balance``).

Everything is ``Decimal``; the aggregation below is pure (no database) and the report is read in one snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Literal, cast, get_args

from sqlalchemy import Engine, func, select

from chalicelib.accounting import quantize_units
from chalicelib.money import ZERO, quantize_money

By = Literal["strategy", "symbol"]
BY_CHOICES: tuple[str, ...] = get_args(By)
#: The key of trades whose opening strategy was never recorded (none since migration 0005 backfilled them).
UNRECORDED = "unrecorded"
TOTAL = "total"
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)


class ReportError(ValueError):
    """The report cannot be made as asked (bad grouping, bad date, empty window); one line says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class TradeLine:
    """What attribution needs of one closed trade."""

    strategy: str | None
    strategy_version: str | None
    symbol: str
    realized_pnl: Decimal
    fees: Decimal

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.fees


@dataclass(frozen=True, slots=True)
class GroupFigures:
    key: str
    versions: tuple[str, ...] | None  # the strategy versions seen (grouped by strategy), else None
    trades: int
    wins: int
    losses: int
    win_rate: Decimal | None
    realized_pnl: Decimal
    fees: Decimal
    net_pnl: Decimal
    average_win: Decimal | None
    average_loss: Decimal | None
    contribution: Decimal | None


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    session_id: int
    by: By
    start: datetime | None
    end: datetime | None
    average_equity: Decimal | None
    groups: tuple[GroupFigures, ...]
    total: GroupFigures


# --- pure aggregation ------------------------------------------------------------------------------------------


def fraction(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """numerator / denominator rounded half-even to 18 places; None unless the denominator is positive."""
    if denominator <= 0:
        return None
    return quantize_units(_CONTEXT.divide(numerator, denominator))


def _mean(amounts: Sequence[Decimal]) -> Decimal | None:
    """The mean of some amounts rounded half-even to the money scale; None without any."""
    if not amounts:
        return None
    return quantize_money(_CONTEXT.divide(sum(amounts, ZERO), Decimal(len(amounts))))


def average_equity(equities: Sequence[Decimal]) -> Decimal | None:
    """Ē: the mean of the equity samples (one per candle close), rounded half-even to the money scale."""
    return _mean(equities)


def group_key(line: TradeLine, by: By) -> str:
    if by == "symbol":
        return line.symbol
    return line.strategy or UNRECORDED


def figures(key: str, lines: Sequence[TradeLine], equity: Decimal | None, *,
            versions: bool = False) -> GroupFigures:
    """One group's figures from its trades (see the module's docstring for each definition)."""
    nets = [line.net_pnl for line in lines]
    wins = [n for n in nets if n > 0]
    losses = [n for n in nets if n <= 0]
    net = sum(nets, ZERO)
    seen = sorted({line.strategy_version for line in lines if line.strategy_version}) if versions else None
    return GroupFigures(
        key=key, versions=tuple(seen) if seen is not None else None, trades=len(nets), wins=len(wins),
        losses=len(losses), win_rate=fraction(Decimal(len(wins)), Decimal(len(nets))),
        realized_pnl=sum((line.realized_pnl for line in lines), ZERO), fees=sum((line.fees for line in lines), ZERO),
        net_pnl=net,
        average_win=_mean(wins), average_loss=_mean(losses),
        contribution=fraction(net, equity) if equity is not None else None,
    )


def attribute(lines: Iterable[TradeLine], by: By, equity: Decimal | None
              ) -> tuple[tuple[GroupFigures, ...], GroupFigures]:
    """The groups (by key, alphabetically) and the total, from the window's trades and its average equity Ē."""
    every = list(lines)
    grouped: dict[str, list[TradeLine]] = {}
    for line in every:
        grouped.setdefault(group_key(line, by), []).append(line)
    by_strategy = by == "strategy"
    groups = tuple(figures(key, grouped[key], equity, versions=by_strategy) for key in sorted(grouped))
    return groups, figures(TOTAL, every, equity)


# --- input -----------------------------------------------------------------------------------------------------


def parse_by(text: str | None) -> By:
    value = "strategy" if text is None else text
    if value in BY_CHOICES:
        return cast(By, value)
    raise ReportError("by", f"by must be one of {', '.join(BY_CHOICES)} (got {value[:40]!r})")


def parse_moment(text: str, field: str) -> datetime:
    """An ISO 8601 date (``2024-01-31``, midnight UTC) or date and time (``2024-01-31T12:00:00Z``, an offset, or none
    for UTC), as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.strip())
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ReportError(field, f"{field} must be an ISO date or date and time, e.g. 2024-01-31 or "
                                 f"2024-01-31T12:00:00Z (got {text[:40]!r})") from None


def window(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """The report's window ``[start, end)`` from its two optional ends; ``start`` must come before ``end``."""
    since = parse_moment(start, "from") if start is not None else None
    until = parse_moment(end, "to") if end is not None else None
    if since is not None and until is not None and since >= until:
        raise ReportError("to", "from must be before to (the window is [from, to))")
    return since, until


# --- the report, read in one snapshot --------------------------------------------------------------------------


def read_report(session_id: int | None, by: By, start: datetime | None = None,
                end: datetime | None = None, *, engine: Engine) -> PerformanceReport:
    """The session's (or the only active one's) attribution over ``[start, end)`` in market time, read in one
    transaction: the session, the window's trades, and one equity per candle close in the window."""
    from chalicelib.balances import select_session
    from chalicelib.db.models import TickLog, Trade
    from chalicelib.db.uow import read_transaction

    with read_transaction(engine) as db:
        session = select_session(db, session_id)
        sid = session.id
        trades = select(Trade.strategy, Trade.strategy_version, Trade.symbol, Trade.realized_pnl, Trade.fees).where(
            Trade.session_id == sid)
        last_at_each_close = select(func.max(TickLog.id)).where(
            TickLog.session_id == sid, TickLog.equity.is_not(None), TickLog.market_time.is_not(None))
        if start is not None:
            trades = trades.where(Trade.market_time >= start)
            last_at_each_close = last_at_each_close.where(TickLog.market_time >= start)
        if end is not None:
            trades = trades.where(Trade.market_time < end)
            last_at_each_close = last_at_each_close.where(TickLog.market_time < end)
        lines = [TradeLine(*row) for row in db.execute(trades).all()]  # any order: sums, counts, sorted keys
        equities = cast(list[Decimal], list(db.execute(  # rows with an equity only (the subquery's filter)
            select(TickLog.equity).where(TickLog.id.in_(last_at_each_close.group_by(TickLog.market_time)))
        ).scalars()))
    equity = average_equity(equities)
    groups, total = attribute(lines, by, equity)
    return PerformanceReport(session_id=sid, by=by, start=start, end=end, average_equity=equity, groups=groups,
                             total=total)
