"""Request and response models. Requests are parsed from the raw body so money never passes through ``float``.

pydantic's own JSON parser (``model_validate_json``) turns a JSON number into a float before a ``Decimal`` field
sees it (``999999999999.12345678`` arrives as ``999999999999.1234`` with pydantic 2.14), so bodies are decoded by
the standard library with ``parse_float=Decimal`` and then validated with ``model_validate``. Response models
are the runtime shape of every answer (the API's and the CLI's ``--json``): each is built from the domain by its
``of`` constructor, validated, and written by ``jsonutil.dumps`` (money as exact numbers); the same classes feed
the OpenAPI document.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

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

from chalicelib.ids import MAX_INT_ID
from chalicelib.ledger.vocabulary import MAX_REASON_LENGTH
from chalicelib.money import MAX_AMOUNT, MONEY_SCALE, parse_money
from chalicelib.states import BotStatus, Mode, PositionStatus, ScheduleStatus, SessionStatus, Side

if TYPE_CHECKING:
    from chalicelib.balances import BalanceSummary, ExposurePoint, ExposureReport, Wallet
    from chalicelib.db.models import AccountBalance, Bot, DepositSchedule, Position, Trade, TradingSession
    from chalicelib.performance import GroupFigures, PerformanceReport
    from chalicelib.valuation import AssetLine, ExposureLine, Mark

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


#: A short word of a bot or schedule request (strategy, symbol, timeframe, exchange, period).
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40, strict=True)]


#: A bot's symbols: one (``BTCUSDT``) or several joined by commas or ``+`` (``BTCUSDT,ETHUSDT``).
Symbols = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, strict=True)]


class BotRequest(BaseModel):
    """``{"strategy": "ml_basic", "symbol": "BTCUSDT,ETHUSDT", "timeframe": "1h", "exchange": "binanceus",
    "initial_capital": 1000}``: several symbols trade from one wallet."""

    model_config = ConfigDict(extra="forbid", title="BotRequest")
    strategy: Short
    symbol: Symbols = Field(description="One symbol, or several joined by commas (BTCUSDT,ETHUSDT): one wallet.")
    timeframe: Short = "1h"
    exchange: Short = "binance"
    initial_capital: MoneyIn = Field(default=Decimal(1000), description="The account's opening capital (> 0).")


class BotPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", title="BotPatch")
    status: BotStatus


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="ScheduleRequest")
    amount: MoneyIn
    every: Short = Field(description="1h, 1d, 1w, 2w …")
    reason: Reason
    session_id: int | None = Field(default=None, ge=1, le=MAX_INT_ID)
    starts_at: datetime | None = None


def parse_bot(raw: bytes | str) -> BotRequest:
    """Validate a ``POST /api/bots`` body (raises ``InvalidJson`` or pydantic's ``ValidationError``)."""
    return BotRequest.model_validate(load_json_exact(raw))


def parse_bot_patch(raw: bytes | str) -> BotPatch:
    """Validate a ``PATCH /api/bots/{id}`` body."""
    return BotPatch.model_validate(load_json_exact(raw))


def parse_schedule(raw: bytes | str) -> ScheduleRequest:
    """Validate a ``POST /api/schedules`` body."""
    return ScheduleRequest.model_validate(load_json_exact(raw))


# --- responses: the runtime shape of every answer, and its documentation -----------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        """The answer as plain data for ``jsonutil.dumps`` (money stays ``Decimal``, times stay ``datetime``)."""
        return self.model_dump()


def _assets(assets: dict[str, Any]) -> dict[str, Decimal]:
    """Asset quantities are stored as exact decimal text; show them as numbers."""
    return {asset: Decimal(str(quantity)) for asset, quantity in assets.items()}


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

    @classmethod
    def of(cls, row: AccountBalance) -> LedgerEntry:
        return cls(id=row.id, session_id=row.session_id, kind=row.kind, amount=row.delta,
                   balance_after=row.total_balance, available_after=row.available_balance,
                   reserved_after=row.reserved_balance, asset_balances=_assets(row.asset_balances),
                   reason=row.update_reason, updated_by=row.updated_by, updated_by_label=row.updated_by_label,
                   reference=row.reference, equity_after=row.equity, units=row.units, unit_value=row.unit_value,
                   market_time=row.market_time, timestamp=row.last_updated)


Share = Annotated[Decimal, WithJsonSchema({"type": "number", "description": "a fraction of equity, 6 decimal places "
                                                                        "(0.25 = 25 %); null when equity is not "
                                                                        "positive"})]


class AssetOut(_Out):
    """One line of the asset breakdown, in the account's currency at the last close."""

    asset: str = Field(description="USD (the cash, first) or a base asset held (BTC, ETH …).")
    quantity: Money = Field(description="Cash in USD, or the quantity held over every open position in the asset "
                                        "(a short counts negative).")
    price: Money = Field(description="USD per unit: 1 for cash, else the close in USD of the asset's pair.")
    value: Money = Field(description="Σ quantity × mark of the positions in the asset; the values sum to equity.")
    share_of_equity: Share | None
    priced_as: str = Field(description="How the price becomes dollars, e.g. 'BTCUSDT close; USDT counted 1:1 as "
                                       "USD' or 'ETHBTC close × BTCUSDT close'.")

    @classmethod
    def of(cls, line: AssetLine) -> AssetOut:
        return cls(asset=line.asset, quantity=line.quantity, price=line.price, value=line.value,
                   share_of_equity=line.share_of_equity, priced_as=line.priced_as)


class ExposureLineOut(_Out):
    asset: str = Field(description="A base asset, or 'total' for the whole wallet.")
    gross: Money = Field(description="Σ |position value| (what the exposure caps limit).")
    net: Money = Field(description="Σ signed position value (longs +, shorts −); equal to gross for long-only.")
    gross_share: Share | None
    net_share: Share | None

    @classmethod
    def of(cls, line: ExposureLine) -> ExposureLineOut:
        return cls(asset=line.asset, gross=line.gross, net=line.net, gross_share=line.gross_share,
                   net_share=line.net_share)


class ExposureOut(_Out):
    """Gross and net exposure, per asset held and in total, as amounts and as a share of equity."""

    assets: list[ExposureLineOut] = Field(description="Per asset held, in the bot's symbol order.")
    total: ExposureLineOut

    @classmethod
    def of(cls, lines: list[ExposureLine]) -> ExposureOut:
        *assets, total = lines
        return cls(assets=[ExposureLineOut.of(a) for a in assets], total=ExposureLineOut.of(total))


class MarkOut(_Out):
    """A pair's mark: the close in USD of its newest applied candle, what its positions are valued at."""

    symbol: str
    close: Money = Field(description="The close in USD (a non-USD quote converted, see priced_as).")
    candle_time: datetime = Field(description="Open time of that candle (the pair's own cursor).")
    priced_as: str

    @classmethod
    def of(cls, symbol: str, mark: Mark, symbols: tuple[str, ...]) -> MarkOut:
        from chalicelib.valuation import priced_as

        return cls(symbol=symbol, close=mark.close, candle_time=mark.cursor, priced_as=priced_as(symbol, symbols))


def _marks(wallet: Wallet) -> list[MarkOut]:
    """The pairs' marks in the bot's symbol order (a pair with no candle applied yet has none)."""
    return [MarkOut.of(s, wallet.marks[s], wallet.symbols) for s in wallet.symbols if s in wallet.marks]


class BalanceResponse(_Out):
    session_id: int
    strategy: str = Field(description="The strategy the account trades now (it may have changed over time).")
    symbol: str = Field(description="The bot's symbols, comma-joined in its fixed order (BTCUSDT,ETHUSDT).")
    symbols: list[str] = Field(description="The bot's symbols as a list, in its fixed order.")
    marks: list[MarkOut] = Field(description="Each pair's last close in USD (what its positions are valued at).")
    base_currency: str
    current_balance: Money = Field(description="Total balance: cash plus the cost of open positions.")
    available_balance: Money
    reserved_balance: Money
    equity: Money = Field(description="Cash plus open positions marked at the last close.")
    unrealized_pnl: Money
    assets: list[AssetOut] = Field(description="The asset breakdown: cash (USD) first, then each asset held, valued "
                                               "at the last close; the values sum to equity.")
    exposure: ExposureOut
    asset_balances: dict[str, Money] = Field(description="Quantities per asset as the last ledger row recorded them "
                                                         "(kept for existing clients; `assets` adds price, value and "
                                                         "share).")
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

    @classmethod
    def of(cls, summary: BalanceSummary) -> BalanceResponse:
        s, latest, wallet = summary.session, summary.latest, summary.wallet
        return cls(
            session_id=s.id, strategy=s.strategy, symbol=s.symbol, symbols=list(wallet.symbols),
            marks=_marks(wallet), base_currency=s.base_currency,
            current_balance=s.total_balance, available_balance=s.available_balance,
            reserved_balance=s.reserved_balance, equity=summary.now.equity, unrealized_pnl=summary.unrealized_pnl,
            assets=[AssetOut.of(a) for a in wallet.assets], exposure=ExposureOut.of(wallet.exposure),
            asset_balances=_assets(latest.asset_balances) if latest else {s.base_currency: s.available_balance},
            market_time=summary.now.market_time, balance_24h_ago=summary.balance_24h_ago,
            balance_change_24h=summary.change_24h_percent, balance_delta_24h=summary.balance_delta_24h,
            net_flows_24h=summary.window.net_flows, pnl_24h=summary.pnl_24h,
            realized_pnl_24h=summary.window.realized_pnl, fees_24h=summary.window.fees, drawdown=summary.drawdown,
            time_weighted_return=summary.time_weighted_return, total_pnl=summary.total_pnl, units=s.units,
            unit_value=s.unit_value, peak_unit_value=s.peak_unit_value,
            last_updated=latest.last_updated if latest else None,
            last_update_reason=latest.update_reason if latest else None,
            recent_history=[LedgerEntry.of(r) for r in summary.recent],
        )


#: ``GET /api/exposure``'s cursor (``?before=``): a candle open time in Unix seconds, at most 9999-12-31.
MAX_EPOCH_SECONDS = 253_402_300_799


class ExposurePointOut(_Out):
    market_time: datetime = Field(description="Close of the candle(s) after which the figures hold.")
    equity: Money
    gross_exposure: Money = Field(description="Σ |position value| after the candles of that market time.")
    gross_share: Share | None

    @classmethod
    def of(cls, point: ExposurePoint) -> ExposurePointOut:
        from chalicelib.valuation import share

        return cls(market_time=point.market_time, equity=point.equity, gross_exposure=point.exposure,
                   gross_share=share(point.exposure, point.equity))


class ExposureResponse(_Out):
    """``GET /api/exposure``: the exposure now (as in ``GET /api/balance``) and its history, newest first."""

    session_id: int
    symbols: list[str]
    market_time: datetime | None = Field(description="The last applied close (null before the first candle).")
    equity: Money
    exposure: ExposureOut
    marks: list[MarkOut]
    limit: int
    history: list[ExposurePointOut] = Field(description="One point per market time the bot applied candles at "
                                                        "(after every pair of that time), newest first.")
    next_cursor: str | None = Field(description="Pass as ?before= for the next (older) page; null at the end.")

    @classmethod
    def of(cls, report: ExposureReport, limit: int) -> ExposureResponse:
        s, wallet = report.session, report.wallet
        cursor = None if report.next_before is None else str(int(report.next_before.timestamp()))
        return cls(session_id=s.id, symbols=list(wallet.symbols), market_time=s.market_time, equity=report.equity,
                   exposure=ExposureOut.of(wallet.exposure), marks=_marks(wallet), limit=limit,
                   history=[ExposurePointOut.of(p) for p in report.history], next_cursor=cursor)


class BalanceChangeResponse(_Out):
    session_id: int
    base_currency: str
    current_balance: Money = Field(description="Total balance right after this change.")
    available_balance: Money
    reserved_balance: Money
    entry: LedgerEntry

    @classmethod
    def of(cls, session: TradingSession, entry: AccountBalance) -> BalanceChangeResponse:
        """Built from the ledger row alone, so a replay returns the same body."""
        return cls(session_id=session.id, base_currency=session.base_currency, current_balance=entry.total_balance,
                   available_balance=entry.available_balance, reserved_balance=entry.reserved_balance,
                   entry=LedgerEntry.of(entry))


class HistoryPage(_Out):
    session_id: int
    limit: int
    entries: list[LedgerEntry]
    next_cursor: str | None = Field(description="Pass as ?before= for the next (older) page; null at the end.")


class PositionOut(_Out):
    id: int
    session_id: int
    symbol: str
    side: Side
    status: PositionStatus
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
    unrealized_pnl: Money | None = Field(description="quantity × last close − cost (what the position would gain "
                                                     "sold at the last close); fees excluded. Null before the "
                                                     "first tick.")

    @classmethod
    def of(cls, p: Position, mark: Mark | None) -> PositionOut:
        from chalicelib import accounting, valuation

        last_close = mark.close if mark is not None else None
        unrealized = (None if mark is None else accounting.unrealized_pnl(
            valuation.positions_value(valuation.holdings([(p.symbol, p.side, p.quantity, p.cost)], {p.symbol: mark})),
            p.cost))
        return cls(id=p.id, session_id=p.session_id, symbol=p.symbol, side=p.side, status=p.status,
                   entry_price=p.entry_price, quantity=p.quantity, cost=p.cost, stop_loss=p.stop_loss,
                   take_profit=p.take_profit, entry_time=p.entry_time, exit_price=p.exit_price,
                   exit_time=p.exit_time, exit_reason=p.exit_reason, realized_pnl=p.realized_pnl, fees=p.fees,
                   last_close=last_close, unrealized_pnl=unrealized)


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
    side: Side
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

    @classmethod
    def of(cls, t: Trade) -> TradeOut:
        return cls(id=t.id, session_id=t.session_id, position_id=t.position_id, symbol=t.symbol, side=t.side,
                   entry_price=t.entry_price, exit_price=t.exit_price, quantity=t.quantity,
                   entry_time=t.entry_time, exit_time=t.exit_time, realized_pnl=t.realized_pnl, fees=t.fees,
                   exit_reason=t.exit_reason, market_time=t.market_time, recorded_at=t.recorded_at)


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
    mode: Mode
    status: SessionStatus
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

    @classmethod
    def of(cls, session: TradingSession) -> SessionOut:
        s = session
        return cls(session_id=s.id, strategy=s.strategy, symbol=s.symbol, timeframe=s.timeframe,
                   exchange=s.exchange, mode=s.mode, status=s.status, base_currency=s.base_currency,
                   initial_balance=s.initial_balance, total_balance=s.total_balance,
                   available_balance=s.available_balance, reserved_balance=s.reserved_balance, units=s.units,
                   unit_value=s.unit_value, peak_unit_value=s.peak_unit_value, version=s.version,
                   market_time=s.market_time, candle_cursor=s.candle_cursor, last_tick_at=s.last_tick_at,
                   started_at=s.started_at, ended_at=s.ended_at)


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


class BotOut(_Out):
    bot_id: int
    strategy: str
    symbol: str
    timeframe: str
    exchange: str
    mode: Mode
    initial_capital: Money = Field(description="The account's opening capital.")
    status: BotStatus = Field(description="active: ticked by the dispatcher; paused: not ticked, account kept.")
    session_id: int | None = Field(description="The bot's account, once its first tick opened it.")
    created_by: str
    created_at: datetime
    updated_at: datetime
    candle_cursor: datetime | None = Field(description="Open time of the newest candle its account applied.")
    last_tick_at: datetime | None

    @classmethod
    def of(cls, bot: Bot, session: TradingSession | None = None) -> BotOut:
        return cls(bot_id=bot.id, strategy=bot.strategy, symbol=bot.symbol, timeframe=bot.timeframe,
                   exchange=bot.exchange, mode=bot.mode, initial_capital=bot.initial_capital, status=bot.status,
                   session_id=bot.session_id, created_by=bot.created_by, created_at=bot.created_at,
                   updated_at=bot.updated_at,
                   candle_cursor=session.candle_cursor if session is not None else None,
                   last_tick_at=session.last_tick_at if session is not None else None)


class BotsResponse(_Out):
    bots: list[BotOut]


class ScheduleOut(_Out):
    schedule_id: int
    session_id: int
    amount: Money
    every: str = Field(description="1h, 1d, 1w, 2w …")
    reason: str
    status: ScheduleStatus
    starts_at: datetime
    next_deposit_at: datetime = Field(description="When the next period not yet due is deposited.")
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, s: DepositSchedule, next_deposit_at: datetime) -> ScheduleOut:
        return cls(schedule_id=s.id, session_id=s.session_id, amount=s.amount, every=s.every, reason=s.reason,
                   status=s.status, starts_at=s.starts_at, next_deposit_at=next_deposit_at,
                   created_by=s.created_by, created_at=s.created_at)


class SchedulesResponse(_Out):
    schedules: list[ScheduleOut]


class PerformanceGroup(_Out):
    key: str = Field(description="The strategy that opened the trades (or the symbol); \"total\" for the total.")
    versions: list[str] | None = Field(description="Grouped by strategy: the versions of its parameters or model "
                                                   "that opened these trades; otherwise null.")
    trades: int
    wins: int = Field(description="Trades with net P&L > 0.")
    losses: int = Field(description="Trades with net P&L ≤ 0 (wins + losses = trades).")
    win_rate: Money | None = Field(description="wins / trades, a fraction (18 places); null without trades.")
    realized_pnl: Money = Field(description="Σ gross realised P&L, (exit − entry) × quantity.")
    fees: Money = Field(description="Σ entry and exit fees.")
    net_pnl: Money = Field(description="realized_pnl − fees.")
    average_win: Money | None = Field(description="Mean net P&L of the wins; null without any.")
    average_loss: Money | None = Field(description="Mean net P&L of the losses; null without any.")
    contribution: Money | None = Field(
        description="Time-weighted contribution: net_pnl / average_equity, a fraction (18 places); contributions "
                    "add up to the total's. Null without an average equity.")

    @classmethod
    def of(cls, g: GroupFigures) -> PerformanceGroup:
        return cls(key=g.key, versions=list(g.versions) if g.versions is not None else None, trades=g.trades,
                   wins=g.wins, losses=g.losses, win_rate=g.win_rate, realized_pnl=g.realized_pnl, fees=g.fees,
                   net_pnl=g.net_pnl, average_win=g.average_win, average_loss=g.average_loss,
                   contribution=g.contribution)


class PerformanceResponse(_Out):
    session_id: int
    by: Literal["strategy", "symbol"]
    from_: datetime | None = Field(alias="from", description="Start of the window (market time, included).")
    to: datetime | None = Field(description="End of the window (market time, excluded).")
    average_equity: Money | None = Field(
        description="The account's mean equity over the window's candle closes (money scale); the denominator "
                    "of every contribution. Null when the window holds no candle.")
    groups: list[PerformanceGroup] = Field(description="One per strategy (or symbol), by key.")
    total: PerformanceGroup

    @classmethod
    def of(cls, report: PerformanceReport) -> PerformanceResponse:
        return cls.model_validate({
            "session_id": report.session_id, "by": report.by, "from": report.start, "to": report.end,
            "average_equity": report.average_equity, "groups": [PerformanceGroup.of(g) for g in report.groups],
            "total": PerformanceGroup.of(report.total)})

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)
