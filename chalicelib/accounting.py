"""Units and performance: capital flows kept apart from trading results, as funds keep their books.

Pure arithmetic, no database (``docs/accounting.md`` and ``ACCOUNTING.md`` hold the definitions):

* **equity** E = cash + Σ open positions marked at the last close;
* the account holds U **units**; the **value per unit** V = E / U. The first capital starts a series at V = 1;
* a **capital flow** F (deposit, withdrawal, a manual set's difference) issues or redeems ΔU = F / V units at the
  current V, so V is the same just before and just after it; trading (fills, fees, P&L, marks) moves E and not U,
  so it moves V;
* the **peak** P is the highest V in the series and the **drawdown** is 1 − V / P: a flow never moves either;
* an empty account (U = 0) or a reset starts a new series at V = 1; the **performance index** G = base × V chains
  the series (``base`` is G where the series began), so G is continuous across series and the time-weighted return
  between any two moments is G(t1) / G(t0) − 1. G starts at 1 when the account opens.

Units and values per unit carry 18 decimal places (``UNITS_SCALE``): enough that U × V reproduces E to the
money scale exactly (checked by :func:`units_reproduce_equity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Context, Decimal

from chalicelib.money import ZERO, quantize_money

#: Decimal places of units, values per unit and the performance index: NUMERIC(38, 18).
UNITS_SCALE = 18
UNITS_QUANTUM = Decimal(1).scaleb(-UNITS_SCALE)
ONE = Decimal(1)
#: Unit arithmetic needs more digits than Decimal's default 28: a trillion dollars in units is 13 + 18 digits.
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)


def quantize_units(value: Decimal) -> Decimal:
    """Round units, a value per unit or an index to the stored scale (banker's rounding)."""
    return value.quantize(UNITS_QUANTUM, context=_CONTEXT)


def value_per_unit(equity: Decimal, units: Decimal) -> Decimal:
    """E / U at the unit scale, computed with enough digits to be exact there."""
    return quantize_units(_CONTEXT.divide(equity, units))


def _product(a: Decimal, b: Decimal) -> Decimal:
    return _CONTEXT.multiply(a, b)


@dataclass(frozen=True, slots=True)
class UnitState:
    """An account's units after some event: how many units, what each is worth, the series' peak value per unit
    and the performance index where the series began."""

    units: Decimal
    unit_value: Decimal
    peak_unit_value: Decimal
    series_base: Decimal

    @property
    def performance_index(self) -> Decimal:
        """G = base × V: 1 when the account opened; G(t1) / G(t0) − 1 is the time-weighted return."""
        return quantize_units(_product(self.series_base, self.unit_value))

    @property
    def drawdown(self) -> Decimal:
        """1 − V / P within the current series (0 at the peak). Exact to the unit scale."""
        return drawdown(self.unit_value, self.peak_unit_value)

    def equity(self) -> Decimal:
        """U × V at the money scale (what the account is worth by its units)."""
        return quantize_money(_product(self.units, self.unit_value))


#: The state before an account's first capital: no units, and a performance index of 1 to chain from.
EMPTY = UnitState(units=ZERO, unit_value=ONE, peak_unit_value=ONE, series_base=ONE)


def drawdown(value: Decimal, peak: Decimal) -> Decimal:
    """The fraction lost from the peak, ``1 − value / peak``; 0 at or above the peak or without a peak."""
    if peak <= 0 or value >= peak:
        return ZERO
    return quantize_units(_CONTEXT.subtract(ONE, _CONTEXT.divide(value, peak)))


def new_series(state: UnitState, equity: Decimal) -> UnitState:
    """Start a new unit series at V = 1 with ``equity`` (the first capital, a reset, or money into an empty
    account). The performance index carries on from where the previous series left it."""
    if equity < 0:
        raise ValueError("equity must not be negative")
    return UnitState(units=quantize_units(equity), unit_value=ONE, peak_unit_value=ONE,
                     series_base=state.performance_index)


def after_flow(state: UnitState, equity_before: Decimal, flow: Decimal) -> UnitState:
    """A capital flow of ``flow`` (positive in, negative out) at the current value per unit.

    Units change by ``flow / V``; V and the peak stay as they were. Into an empty account the flow starts a new
    series; a flow that empties the account redeems every unit (V is kept, so the index stays continuous).
    """
    equity_after = equity_before + flow
    if equity_after < 0:
        raise ValueError("a flow cannot take equity below zero")
    if state.units <= 0 or state.unit_value <= 0:  # empty, or wiped out by trading: nothing to price units at
        return new_series(state, equity_after) if equity_after > 0 else replace(state, units=ZERO)
    if equity_after == 0:
        return replace(state, units=ZERO)
    return replace(state, units=quantize_units(_CONTEXT.add(state.units, _CONTEXT.divide(flow, state.unit_value))))


def after_trading(state: UnitState, equity: Decimal) -> UnitState:
    """Trading (a fill, a fee, P&L, a new mark) moved equity to ``equity``: V = E / U, and the peak follows."""
    if state.units <= 0:
        return state
    value = value_per_unit(equity, state.units)
    return replace(state, unit_value=value, peak_unit_value=max(state.peak_unit_value, value))


def units_reproduce_equity(state: UnitState, equity: Decimal) -> bool:
    """U × V equals E at the money scale (an empty account has no units and no equity)."""
    if state.units == 0:
        return equity == 0
    return state.equity() == quantize_money(equity)


def equity(cash: Decimal, positions_value: Decimal) -> Decimal:
    """E = cash + open positions marked at the last close: the one equity of the tick, the API and the CLI."""
    return cash + positions_value


def unrealized_pnl(positions_value: Decimal, cost: Decimal) -> Decimal:
    """What open positions would gain (or lose) if sold at their mark: marked value − what they cost (fees
    excluded). The account's figure and each position's figure are this one formula, so equity = total
    balance + unrealised P&L holds for both."""
    return positions_value - cost


def time_weighted_return(index_from: Decimal, index_to: Decimal) -> Decimal | None:
    """G(t1) / G(t0) − 1 as a fraction, exact to the unit scale; None without a base."""
    if index_from <= 0:
        return None
    return quantize_units(_CONTEXT.subtract(_CONTEXT.divide(index_to, index_from), ONE))


def percent(fraction: Decimal | None) -> Decimal | None:
    """A fraction as a percentage with two decimals (for display fields such as ``balance_change_24h``)."""
    if fraction is None:
        return None
    return (fraction * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class MaxDrawdown:
    """The deepest fall of a value series: its depth (a fraction, :func:`drawdown`) and where it happened, as
    indexes into the series — the peak before it, the trough, and the first value back at or above that peak
    (None while still under water). Depth 0 (never below a peak) has ``peak == trough == 0``."""

    depth: Decimal
    peak: int
    trough: int
    recovery: int | None


def max_drawdown(values: Sequence[Decimal]) -> MaxDrawdown:
    """The deepest :func:`drawdown` of ``values`` (equity or value per unit) from its running peak: the one
    place a backtest, a report and the trainer measure it. The earliest trough wins a tie."""
    best = MaxDrawdown(ZERO, 0, 0, None)
    peak_index = 0
    for i, value in enumerate(values):
        if value > values[peak_index]:
            peak_index = i
        depth = drawdown(value, values[peak_index])
        if depth > best.depth:
            best = MaxDrawdown(depth, peak_index, i, None)
    if best.depth > 0:
        top = values[best.peak]
        recovered = next((j for j in range(best.trough + 1, len(values)) if values[j] >= top), None)
        best = replace(best, recovery=recovered)
    return best
