"""Request and response models. Requests are parsed from the raw body so money never passes through ``float``.

pydantic's own JSON parser (``model_validate_json``) turns a JSON number into a float before a ``Decimal`` field
sees it (``999999999999.12345678`` arrives as ``999999999999.1234`` with pydantic 2.14), so bodies are decoded by
the standard library with ``parse_float=Decimal`` and then validated with ``model_validate``. Response models
describe what the views write; they feed the OpenAPI document and the tests check every response against them.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from chalicelib.ledger.vocabulary import MAX_REASON_LENGTH
from chalicelib.money import MAX_AMOUNT, MONEY_SCALE, parse_money

#: Largest request body accepted (bytes). A balance change is a few hundred bytes.
MAX_BODY_BYTES = 16 * 1024

MAX_LABEL_LENGTH = 100

#: A text amount the server accepts: at most 13 integer digits (a trillion) and 8 decimals.
_MONEY_PATTERN = r"^-?[0-9]{1,13}(\.[0-9]{1,8})?$"
#: Body encodings JSON allows besides UTF-8 (RFC 8259 §8.1 requires UTF-8; ``json.loads`` would guess these).
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class InvalidJson(ValueError):
    """The body is not one JSON document (syntax, encoding, NaN/Infinity literals, duplicate keys, nesting)."""


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidJson(f"duplicate key {key!r}")
        result[key] = value
    return result


def is_utf16_or_32(data: bytes) -> bool:
    """A body in UTF-16/32: a byte-order mark, or a NUL among the first bytes (JSON text never starts with one)."""
    return data.startswith(_UTF16_32_BOMS) or 0 in data[:4]


def load_json_exact(raw: bytes | str) -> Any:
    """Decode a request body: numbers become ``Decimal`` (exact), NaN/Infinity and duplicate keys are refused."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if is_utf16_or_32(data):
        raise InvalidJson("the body is not UTF-8 text (UTF-16 and UTF-32 are not accepted)")
    try:  # decoded here as UTF-8: json.loads(bytes) would guess UTF-16/32 and accept them
        return json.loads(data.decode("utf-8"), parse_float=Decimal, parse_int=Decimal,
                          parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson("the body is nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidJson("the body is not UTF-8 text") from None
    except ArithmeticError:  # decimal.InvalidOperation: a number beyond what Decimal can hold (1e-99999999999999999999)
        raise InvalidJson("a number in the body is out of any sensible range") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise InvalidJson(str(exc)) from None


def _plain_decimal_text(value: Any) -> Any:
    """A string amount must be plain ASCII decimal text (``Decimal()`` would also take "١٢٣", " 5", "1e5")."""
    if isinstance(value, str) and not re.fullmatch(_MONEY_PATTERN, value):
        raise ValueError("a text amount must be plain decimal digits, e.g. \"1250.50\"")
    return value


def _amount(value: Decimal) -> Decimal:
    """Finite, at most 8 decimals, at most a trillion (``chalicelib.money.parse_money``'s rules)."""
    return parse_money(value, field="value")


def _clean_text_before_strip(value: Any) -> Any:
    """Checked before whitespace is stripped, so a U+0085 or U+2028 at either end is refused, not dropped."""
    return clean_text(value) if isinstance(value, str) else value


def clean_text(value: str) -> str:
    """Printable text only: no control (Cc), format (Cf: bidi overrides such as U+202E, zero-width characters),
    line or paragraph separator, private-use, unassigned or surrogate characters, which would let a reason
    display as something other than what it says."""
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for ch in value):
        raise ValueError("must not contain control, format (bidi, zero-width), line separator, private-use, "
                         "unassigned or surrogate characters")
    return value


#: A money amount in a request: a JSON number (or a decimal string), exact.
MoneyIn = Annotated[
    Decimal,
    BeforeValidator(_plain_decimal_text),
    AfterValidator(_amount),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": -int(MAX_AMOUNT), "maximum": int(MAX_AMOUNT)},
                              {"type": "string", "pattern": _MONEY_PATTERN}],
                    "description": f"exact decimal amount, at most {MONEY_SCALE} decimal places, "
                                   f"absolute value at most {MAX_AMOUNT}"}),
]
#: A money amount in a response: a JSON number written from the decimal text (never via float).
Money = Annotated[Decimal, WithJsonSchema({"type": "number", "description": "exact decimal amount"})]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON_LENGTH, strict=True),
    BeforeValidator(_clean_text_before_strip),
]
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LABEL_LENGTH, strict=True),
    BeforeValidator(_clean_text_before_strip),
]


def _exactly_one_in_schema(schema: dict[str, Any]) -> None:
    """The document says what the validators enforce: balance and amount are numbers (never null) and exactly one
    of them is given; a reason has a visible character."""
    properties = schema["properties"]
    for name in ("balance", "amount"):
        described = properties[name]
        money = copy.deepcopy(next(s for s in described.pop("anyOf") if s.get("type") != "null"))
        described.pop("default", None)
        described["description"] = f"{described.get('description', '')} {money.pop('description', '')}".strip()
        described.update(money)
    properties["amount"]["not"] = {"const": 0}
    balance_number, balance_text = properties["balance"]["anyOf"]
    balance_number["minimum"] = 0
    balance_text["pattern"] = _MONEY_PATTERN.replace("^-?", "^")
    properties["reason"]["pattern"] = r"\S"
    schema["oneOf"] = [{"required": ["balance"], "not": {"required": ["amount"]}},
                       {"required": ["amount"], "not": {"required": ["balance"]}}]


class BalanceChangeRequest(BaseModel):
    """``{"balance": 5000, "reason": …}`` sets the total; ``{"amount": ±500, "reason": …}`` deposits/withdraws."""

    model_config = ConfigDict(extra="forbid", title="BalanceChangeRequest", json_schema_extra=_exactly_one_in_schema)

    balance: MoneyIn | None = Field(default=None, description="New total balance (≥ 0); the ledger records "
                                                              "the difference as kind manual_set.")
    amount: MoneyIn | None = Field(default=None, description="Deposit (> 0) or withdrawal (< 0); never 0.")
    reason: Reason = Field(description="Why the change is made (1–200 characters).")
    updated_by: Label | None = Field(default=None, description="Free-text label kept beside the "
                                                               "authenticated token name; not the attribution.")

    @field_validator("balance", "amount", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must be a number, not null (leave the field out instead)")
        return value

    @field_validator("balance")
    @classmethod
    def _balance_not_negative(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value < 0:
            raise ValueError("balance must not be negative")
        return value

    @field_validator("amount")
    @classmethod
    def _amount_not_zero(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value == 0:
            raise ValueError("amount must not be zero (positive deposits, negative withdraws)")
        return value

    @model_validator(mode="after")
    def _exactly_one_of_balance_and_amount(self) -> BalanceChangeRequest:
        if (self.balance is None) == (self.amount is None):
            raise ValueError("give exactly one of balance (set the total) and amount (deposit or withdraw)")
        return self

    @property
    def operation(self) -> tuple[Literal["set", "deposit", "withdraw"], Decimal]:
        if self.balance is not None:
            return "set", self.balance
        assert self.amount is not None
        return ("deposit", self.amount) if self.amount > 0 else ("withdraw", -self.amount)


def parse_balance_change(raw: bytes | str) -> BalanceChangeRequest:
    """Validate a ``POST /api/balance`` body (raises ``InvalidJson`` or pydantic's ``ValidationError``)."""
    return BalanceChangeRequest.model_validate(load_json_exact(raw))


# --- responses (documentation and test contracts) --------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Out):
    field: str | None = Field(default=None, description="Dotted path of the offending field, if any.")
    message: str
    type: str | None = None
    choices: list[dict[str, Any]] | None = None


class ErrorInfo(_Out):
    code: str = Field(description="Stable machine-readable code, e.g. validation_failed, insufficient_funds.")
    message: str
    details: list[dict[str, Any]]


class ErrorResponse(_Out):
    error: ErrorInfo


class LedgerEntry(_Out):
    id: int
    session_id: int
    kind: str
    amount: Money
    balance_after: Money
    available_after: Money
    reserved_after: Money
    asset_balances: dict[str, Money]
    reason: str
    updated_by: str = Field(description="Name of the authenticated token (or 'system') that made the change.")
    updated_by_label: str | None
    reference: str | None
    equity_after: Money = Field(description="Equity after the row: cash plus open positions at the last close.")
    units: Money = Field(description="The account's units after the row (18 decimal places).")
    unit_value: Money = Field(description="Value per unit after the row (equity / units; 1 when a series starts).")
    market_time: datetime = Field(description="The market time the row belongs to: the close of the candle a tick "
                                              "applied, or for a manual change the account's last applied close.")
    timestamp: datetime = Field(description="The wall-clock time the row was recorded.")


class BalanceResponse(_Out):
    session_id: int
    strategy: str = Field(description="The strategy the account trades now (it may have changed over time).")
    symbol: str
    base_currency: str
    current_balance: Money = Field(description="Total balance: cash plus the cost of open positions.")
    available_balance: Money
    reserved_balance: Money
    equity: Money = Field(description="Cash plus open positions marked at the last close.")
    unrealized_pnl: Money
    asset_balances: dict[str, Money]
    market_time: datetime = Field(description="The market time the figures are for (the last applied close).")
    balance_24h_ago: Money = Field(description="Equity 24 market hours ago (or at the account's start).")
    balance_change_24h: Money | None = Field(
        description="24 h performance in percent, EXCLUDING capital flows: the time-weighted return of the value "
                    "per unit over the last 24 market hours (since the start when the account is younger). "
                    "Deposits, withdrawals and manual sets never move it.")
    balance_delta_24h: Money = Field(description="Plain change in equity over the window, in the account's "
                                                 "currency: net_flows_24h + pnl_24h.")
    net_flows_24h: Money = Field(description="Deposits − withdrawals ± manual sets (and resets) in the window.")
    pnl_24h: Money = Field(description="Trading result in the window, realised and unrealised (delta − flows).")
    realized_pnl_24h: Money = Field(description="Gross realised P&L of trades closed in the window.")
    fees_24h: Money = Field(description="Fees paid in the window.")
    drawdown: Money = Field(description="Fraction below the peak value per unit (0.05 = 5 %); flows never move it.")
    time_weighted_return: Money | None = Field(description="Fraction gained per unit since the account began, "
                                                           "chained across resets (0.045 = +4.5 %).")
    total_pnl: Money = Field(description="Money-weighted: equity − capital put in (initial + net flows) since the "
                                         "last reset.")
    units: Money
    unit_value: Money
    peak_unit_value: Money
    last_updated: datetime | None
    last_update_reason: str | None
    recent_history: list[LedgerEntry]


class BalanceChangeResponse(_Out):
    session_id: int
    base_currency: str
    current_balance: Money = Field(description="Total balance right after this change.")
    available_balance: Money
    reserved_balance: Money
    entry: LedgerEntry


class HistoryPage(_Out):
    session_id: int
    limit: int
    entries: list[LedgerEntry]
    next_cursor: str | None = Field(description="Pass as ?before= for the next (older) page; null at the end.")


class PositionOut(_Out):
    id: int
    session_id: int
    symbol: str
    side: str
    status: str
    entry_price: Money
    quantity: Money
    cost: Money
    stop_loss: Money | None
    take_profit: Money | None
    entry_time: datetime
    exit_price: Money | None
    exit_time: datetime | None
    exit_reason: str | None
    realized_pnl: Money | None
    fees: Money
    last_close: Money | None
    unrealized_pnl: Money | None = Field(description="(last close − entry) × quantity for longs, the opposite "
                                                     "for shorts; fees excluded. Null before the first tick.")


class PositionsResponse(_Out):
    session_id: int
    last_close: Money | None
    last_close_at: datetime | None
    positions: list[PositionOut]


class TradeOut(_Out):
    id: int
    session_id: int
    position_id: int | None
    symbol: str
    side: str
    entry_price: Money
    exit_price: Money
    quantity: Money
    entry_time: datetime
    exit_time: datetime
    realized_pnl: Money
    fees: Money
    exit_reason: str
    market_time: datetime = Field(description="Close of the candle the trade closed in.")
    recorded_at: datetime


class TradesPage(_Out):
    session_id: int
    limit: int
    trades: list[TradeOut]
    next_cursor: str | None


class SessionOut(_Out):
    session_id: int
    strategy: str
    symbol: str
    timeframe: str
    exchange: str
    mode: str
    status: str
    base_currency: str
    initial_balance: Money
    total_balance: Money
    available_balance: Money
    reserved_balance: Money
    units: Money
    unit_value: Money
    peak_unit_value: Money
    version: int
    market_time: datetime | None
    candle_cursor: datetime | None
    last_tick_at: datetime | None
    started_at: datetime
    ended_at: datetime | None


class SessionsResponse(_Out):
    sessions: list[SessionOut]


class MeResponse(_Out):
    name: str = Field(description="The token's name (what the ledger records as updated_by).")
    scope: Literal["read", "write"]


class HealthResponse(_Out):
    status: Literal["ok", "degraded", "unavailable"]
    database: Literal["reachable", "unreachable"]
    schema_at_head: bool | None
    last_tick_at: datetime | None
    last_tick_age_seconds: int | None
    checked_at: datetime
