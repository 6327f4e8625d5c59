"""The ledger: the only code that changes a session's money, and the one home of its vocabulary.

Bookkeeping: ``total = cash + cost of open positions``, ``reserved = cost of open positions``,
``available = total − reserved`` (the cash), never negative. Beside it the account keeps units
(``chalicelib.accounting``): equity = cash + open positions marked at the last close; a capital flow (deposit,
withdrawal, manual set) issues or redeems units at the value per unit, trading moves the value per unit, and the
drawdown is measured on the value per unit, so adding or removing capital never looks like a gain or a loss.

* ``vocabulary`` — the kinds (:class:`Kind`), references, text and page limits (models, schemas, OpenAPI, CLI and
  verify import them from here);
* ``rules`` — what a change may do, checked without a database (:func:`check`);
* ``store`` — the lock and the one write path (:class:`Batch`; :func:`post` is a batch of one) and the named
  operations.

The store is imported on first use (``chalicelib.db.models`` imports the vocabulary, and the store imports the
models).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.ledger.rules import (
    SYSTEM,
    Actor,
    InsufficientFunds,
    InvalidChange,
    LedgerError,
    Posting,
    SessionNotFound,
    base_asset,
    check,
    equity_of,
    held_quantities,
    holdings,
    marked_value,
    unit_state,
)
from chalicelib.ledger.vocabulary import (
    CAPITAL_FLOW_KINDS,
    DEFAULT_PAGE,
    EVENT_KINDS,
    KINDS,
    MAX_ACTOR_LENGTH,
    MAX_PAGE,
    MAX_REASON_LENGTH,
    OPENING_KINDS,
    REFERENCE_LENGTH,
    SERIES_START_KINDS,
    TRADING_KINDS,
    Kind,
    position_reference,
    request_reference,
    trade_reference,
)

if TYPE_CHECKING:
    from chalicelib.ledger.store import (
        Batch,
        Locked,
        lock,
        lock_session,
        open_positions,
        post,
        record_deposit,
        record_event,
        record_manual_set,
        record_reset,
        record_withdrawal,
        start_session,
    )

_STORE = {"Batch", "Locked", "lock", "lock_session", "open_positions", "post", "record_deposit", "record_event",
          "record_manual_set", "record_reset", "record_withdrawal", "start_session"}


def __getattr__(name: str) -> Any:
    if name in _STORE:
        from chalicelib.ledger import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CAPITAL_FLOW_KINDS",
    "DEFAULT_PAGE",
    "EVENT_KINDS",
    "KINDS",
    "MAX_ACTOR_LENGTH",
    "MAX_PAGE",
    "MAX_REASON_LENGTH",
    "OPENING_KINDS",
    "REFERENCE_LENGTH",
    "SERIES_START_KINDS",
    "SYSTEM",
    "TRADING_KINDS",
    "Actor",
    "Batch",
    "InsufficientFunds",
    "InvalidChange",
    "Kind",
    "LedgerError",
    "Locked",
    "Posting",
    "SessionNotFound",
    "base_asset",
    "check",
    "equity_of",
    "held_quantities",
    "holdings",
    "lock",
    "lock_session",
    "marked_value",
    "open_positions",
    "position_reference",
    "post",
    "record_deposit",
    "record_event",
    "record_manual_set",
    "record_reset",
    "record_withdrawal",
    "request_reference",
    "start_session",
    "trade_reference",
    "unit_state",
]
