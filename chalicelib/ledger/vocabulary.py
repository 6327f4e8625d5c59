"""The ledger's vocabulary, defined once: the kinds of row, what each kind means, how references are written, and
the limits of its text and of a page of it. The data model, the API's schemas and OpenAPI document, the CLI and
verify import these; nothing else spells them.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """What a ledger row records."""

    INITIAL = "initial"
    TRADE_PNL = "trade_pnl"
    FEE = "fee"
    MANUAL_SET = "manual_set"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    RESET = "reset"
    RECOVERED_FROM_TRADES = "recovered_from_trades"
    RESUMED = "resumed"
    STRATEGY_SWITCH = "strategy_switch"
    REOPENED = "reopened"


#: Every kind, in the order the database's CHECK constraint lists them.
KINDS: tuple[str, ...] = tuple(k.value for k in Kind)
#: Kinds that move capital in or out at the value per unit (units issued or redeemed; performance unchanged).
CAPITAL_FLOW_KINDS = frozenset({Kind.DEPOSIT, Kind.WITHDRAWAL, Kind.MANUAL_SET})
#: Kinds that start a unit series at a value per unit of 1 (the first row of an account, and a reset).
SERIES_START_KINDS = frozenset({Kind.INITIAL, Kind.RECOVERED_FROM_TRADES, Kind.RESUMED, Kind.RESET})
#: Kinds a ledger may begin with.
OPENING_KINDS = SERIES_START_KINDS
#: Trading results: they move the value per unit.
TRADING_KINDS = frozenset({Kind.TRADE_PNL, Kind.FEE})
#: Events in the account's timeline that move no money (delta 0): a strategy switch, a stopped bot reopened.
EVENT_KINDS = frozenset({Kind.STRATEGY_SWITCH, Kind.REOPENED})

#: The longest reason a row keeps, and the longest name of who made it (the columns' widths).
MAX_REASON_LENGTH = 200
MAX_ACTOR_LENGTH = 100
#: The width of the reference column.
REFERENCE_LENGTH = 128
#: The most ledger rows (or trades, or ticks) one page of a listing returns, and the default page.
MAX_PAGE = 500
DEFAULT_PAGE = 50


def position_reference(position_id: int) -> str:
    """The reference of a position's opening row (entry fee and reservation): ``position:{id}:open``."""
    return f"position:{position_id}:open"


def trade_reference(position_id: int, part: str) -> str:
    """The references of a closed position's rows: ``trade:{id}:pnl`` and ``trade:{id}:exit_fee``."""
    return f"trade:{position_id}:{part}"


def request_reference(idempotency_key: str) -> str:
    """The reference of a row written by a request with an Idempotency-Key: ``request:{key}``."""
    return f"request:{idempotency_key}"


#: What each reference of a kind looks like (verify checks every row against it; None: no reference).
REQUEST_REFERENCE_PATTERN = r"request:.+"
