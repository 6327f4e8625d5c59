"""Plain-dict views of the domain, shared by the CLI's ``--json`` and the HTTP API (money stays Decimal)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chalicelib.balances import BalanceSummary
from chalicelib.db.models import AccountBalance, Position, Trade, TradingSession


def assets_view(assets: dict[str, Any]) -> dict[str, Decimal]:
    """Asset quantities are stored as exact decimal text; show them as numbers."""
    return {asset: Decimal(str(quantity)) for asset, quantity in assets.items()}


def entry_view(row: AccountBalance) -> dict[str, Any]:
    return {
        "id": row.id,
        "session_id": row.session_id,
        "kind": row.kind,
        "amount": row.delta,
        "balance_after": row.total_balance,
        "available_after": row.available_balance,
        "reserved_after": row.reserved_balance,
        "asset_balances": assets_view(row.asset_balances),
        "reason": row.update_reason,
        "updated_by": row.updated_by,
        "updated_by_label": row.updated_by_label,
        "reference": row.reference,
        "equity_after": row.equity,
        "units": row.units,
        "unit_value": row.unit_value,
        "market_time": row.market_time,
        "timestamp": row.last_updated,
    }


def session_view(session: TradingSession) -> dict[str, Any]:
    return {
        "session_id": session.id,
        "strategy": session.strategy,
        "symbol": session.symbol,
        "timeframe": session.timeframe,
        "exchange": session.exchange,
        "mode": session.mode,
        "status": session.status,
        "base_currency": session.base_currency,
        "initial_balance": session.initial_balance,
        "total_balance": session.total_balance,
        "available_balance": session.available_balance,
        "reserved_balance": session.reserved_balance,
        "units": session.units,
        "unit_value": session.unit_value,
        "peak_unit_value": session.peak_unit_value,
        "version": session.version,
        "market_time": session.market_time,
        "candle_cursor": session.candle_cursor,
        "last_tick_at": session.last_tick_at,
        "started_at": session.started_at,
        "ended_at": session.ended_at,
    }


def summary_view(summary: BalanceSummary) -> dict[str, Any]:
    s, latest = summary.session, summary.latest
    return {
        "session_id": s.id,
        "strategy": s.strategy,
        "symbol": s.symbol,
        "base_currency": s.base_currency,
        "current_balance": s.total_balance,
        "available_balance": s.available_balance,
        "reserved_balance": s.reserved_balance,
        "equity": summary.now.equity,
        "unrealized_pnl": summary.unrealized_pnl,
        "asset_balances": assets_view(latest.asset_balances) if latest else {s.base_currency: s.available_balance},
        "market_time": summary.now.market_time,
        "balance_24h_ago": summary.balance_24h_ago,
        "balance_change_24h": summary.change_24h_percent,
        "balance_delta_24h": summary.balance_delta_24h,
        "net_flows_24h": summary.window.net_flows,
        "pnl_24h": summary.pnl_24h,
        "realized_pnl_24h": summary.window.realized_pnl,
        "fees_24h": summary.window.fees,
        "drawdown": summary.drawdown,
        "time_weighted_return": summary.time_weighted_return,
        "total_pnl": summary.total_pnl,
        "units": s.units,
        "unit_value": s.unit_value,
        "peak_unit_value": s.peak_unit_value,
        "last_updated": latest.last_updated if latest else None,
        "last_update_reason": latest.update_reason if latest else None,
        "recent_history": [entry_view(r) for r in summary.recent],
    }


def position_view(p: Position) -> dict[str, Any]:
    return {
        "id": p.id,
        "session_id": p.session_id,
        "symbol": p.symbol,
        "side": p.side,
        "status": p.status,
        "entry_price": p.entry_price,
        "quantity": p.quantity,
        "cost": p.cost,
        "stop_loss": p.stop_loss,
        "take_profit": p.take_profit,
        "entry_time": p.entry_time,
        "exit_price": p.exit_price,
        "exit_time": p.exit_time,
        "exit_reason": p.exit_reason,
        "realized_pnl": p.realized_pnl,
        "fees": p.fees,
    }


def trade_view(t: Trade) -> dict[str, Any]:
    return {
        "id": t.id,
        "session_id": t.session_id,
        "position_id": t.position_id,
        "symbol": t.symbol,
        "side": t.side,
        "entry_price": t.entry_price,
        "exit_price": t.exit_price,
        "quantity": t.quantity,
        "entry_time": t.entry_time,
        "exit_time": t.exit_time,
        "realized_pnl": t.realized_pnl,
        "fees": t.fees,
        "exit_reason": t.exit_reason,
        "market_time": t.market_time,
        "recorded_at": t.recorded_at,
    }
