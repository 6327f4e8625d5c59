"""The ledger's rules, without a database: what a change may do to an account and what it leaves behind.

:func:`check` takes a session's cached balance (a ``TradingSession`` object, persisted or not) and one change and
returns the ledger row and the session's new columns, or raises naming why the change is refused. Nothing here
reads or writes the database (``chalicelib.ledger.store`` does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chalicelib import accounting, valuation
from chalicelib.accounting import UnitState
from chalicelib.ledger.vocabulary import (
    CAPITAL_FLOW_KINDS,
    EVENT_KINDS,
    KINDS,
    MAX_ACTOR_LENGTH,
    MAX_REASON_LENGTH,
    SERIES_START_KINDS,
    TRADING_KINDS,
    trade_reference,
)
from chalicelib.money import ZERO, format_usd, money_text, quantize_money
from chalicelib.valuation import Mark

if TYPE_CHECKING:
    from chalicelib.db.models import Position, TradingSession


class LedgerError(Exception):
    """A change the ledger refuses; nothing was written."""

    code = "ledger_error"


class SessionNotFound(LedgerError):
    code = "session_not_found"


class InsufficientFunds(LedgerError):
    """The change would leave available balance below zero."""

    code = "insufficient_funds"


class InvalidChange(LedgerError):
    code = "invalid_change"


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the authenticated name, and optionally a free-text label they typed."""

    name: str
    label: str | None = None


SYSTEM = Actor("system")


def base_asset(symbol: str) -> str:
    """``BTCUSDT`` → ``BTC``; ``BTC/USDT`` → ``BTC``."""
    from chalicelib.trading.symbols import parse_symbol

    return parse_symbol(symbol).base


def held_quantities(positions: list[Position]) -> dict[str, Decimal]:
    """Quantity held per base asset in these positions (for ``asset_balances``)."""
    held: dict[str, Decimal] = {}
    for p in positions:
        asset = base_asset(p.symbol)
        held[asset] = held.get(asset, ZERO) + p.quantity
    return held


def holdings(positions: Sequence[Position], marks: Mapping[str, Mark]) -> list[valuation.Holding]:
    """The open positions as ``chalicelib.valuation`` values them: each at its pair's mark."""
    return valuation.holdings(((p.symbol, p.side, p.quantity, p.cost) for p in positions), marks)


def marked_value(positions: Sequence[Position], marks: Mapping[str, Mark]) -> Decimal:
    """What open positions are worth, each at its pair's mark (the last close, in USD); at cost before one."""
    return valuation.positions_value(holdings(positions, marks))


def unit_state(session: TradingSession) -> UnitState:
    """The account's units as the session row caches them."""
    return UnitState(units=session.units, unit_value=session.unit_value, peak_unit_value=session.peak_unit_value,
                     series_base=session.series_base)


def equity_of(session: TradingSession, positions: Sequence[Position],
              marks: Mapping[str, Mark] | None = None) -> Decimal:
    """Equity: cash plus open positions marked at ``marks`` (default: the session's marks)."""
    return accounting.equity(session.available_balance,
                             marked_value(positions, marks if marks is not None else session.marks))


def _check_text(value: str, what: str, limit: int) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise InvalidChange(f"{what} must not be empty")
    if len(cleaned) > limit:
        raise InvalidChange(f"{what} is longer than {limit} characters")
    return cleaned


@dataclass(frozen=True)
class Posting:
    """One checked change: the ledger row's columns and the session's cached columns after it."""

    row: dict[str, Any]
    session: dict[str, Any]


def _units_after(session: TradingSession, kind: str, delta: Decimal, equity: Decimal) -> tuple[UnitState, Decimal]:
    """The account's units and net contributions after a change of ``kind`` that leaves equity at ``equity``."""
    state = unit_state(session)
    if kind in SERIES_START_KINDS:
        return accounting.new_series(state, equity), session.total_balance + delta
    if kind in CAPITAL_FLOW_KINDS:
        return accounting.after_flow(state, equity - delta, delta), session.net_contributions + delta
    if kind in TRADING_KINDS:
        return accounting.after_trading(state, equity), session.net_contributions
    return state, session.net_contributions


def check(
    session: TradingSession,
    *,
    kind: str,
    delta: Decimal,
    reason: str,
    actor: Actor,
    reserved_delta: Decimal,
    reference: str | None,
    held: Mapping[str, Decimal],
    when: datetime,
    positions_value: Decimal | None,
    market_time: datetime | None,
) -> Posting:
    """Check one change against the session's current balance and compute its ledger row and the session's new
    cached values. ``positions_value`` is what the open positions are worth after the change at the current mark
    (None: at cost). Raises before anything is written; changes nothing."""
    if kind not in KINDS:
        raise InvalidChange(f"unknown ledger kind {kind!r}")
    if kind in EVENT_KINDS and (delta != 0 or reserved_delta != 0):
        raise InvalidChange(f"a {kind} row moves no money")
    if delta != quantize_money(delta) or reserved_delta != quantize_money(reserved_delta):
        raise InvalidChange("amounts carry at most 8 decimal places")
    reason = _check_text(reason, "reason", MAX_REASON_LENGTH)
    name = _check_text(actor.name, "updated_by", MAX_ACTOR_LENGTH)
    label = actor.label.strip()[:MAX_ACTOR_LENGTH] if actor.label and actor.label.strip() else None

    total = session.total_balance + delta
    reserved = session.reserved_balance + reserved_delta
    available = total - reserved
    if reserved < 0:
        raise InvalidChange(f"reserved balance would be negative ({format_usd(reserved)})")
    if available < 0:
        raise InsufficientFunds(
            f"available balance would be {format_usd(available)} {session.base_currency} "
            f"(total {format_usd(total)}, of which {format_usd(reserved)} is held by open positions)"
        )
    equity = available + (reserved if positions_value is None else positions_value)
    state, contributions = _units_after(session, kind, delta, equity)

    assets = {session.base_currency: money_text(available)}
    assets.update({asset: format(qty.normalize(), "f") for asset, qty in sorted(held.items()) if qty})

    row = {
        "session_id": session.id,
        "base_currency": session.base_currency,
        "kind": kind,
        "delta": delta,
        "total_balance": total,
        "available_balance": available,
        "reserved_balance": reserved,
        "asset_balances": assets,
        "reference": reference,
        "units": state.units,
        "unit_value": state.unit_value,
        "performance_index": state.performance_index,
        "equity": equity,
        "market_time": market_time or session.market_time or when,
        "last_updated": when,
        "updated_by": name,
        "updated_by_label": label,
        "update_reason": reason,
    }
    cached = {
        "total_balance": total,
        "available_balance": available,
        "reserved_balance": reserved,
        "units": state.units,
        "unit_value": state.unit_value,
        "peak_unit_value": state.peak_unit_value,
        "series_base": state.series_base,
        "net_contributions": contributions,
        "version": session.version + 1,
    }
    return Posting(row, cached)


def position_opened(cost: Decimal, fee: Decimal) -> dict[str, Any]:
    return {"kind": "fee", "delta": -fee, "reserved_delta": cost, "reason": "trade_entry_fee"}


def position_closed(position_id: int, pnl: Decimal, exit_fee: Decimal, released_cost: Decimal,
                     exit_reason: str) -> list[dict[str, Any]]:
    return [
        {"kind": "fee", "delta": -exit_fee, "reserved_delta": -released_cost,
         "reason": f"trade_exit_fee_{exit_reason}", "reference": trade_reference(position_id, "exit_fee")},
        {"kind": "trade_pnl", "delta": pnl, "reason": f"trade_pnl_{exit_reason}",
         "reference": trade_reference(position_id, "pnl")},
    ]


