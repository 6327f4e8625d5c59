"""The data model. Alembic owns the schema (``migrations/``); these mappings must agree with it (tested).

Money columns are exact (``Money``/``Quantity``), timestamps aware UTC. The database itself refuses values that
can never be valid (negative available balance, non-positive prices and quantities) and a second active session
for the same bot.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chalicelib.db.types import MarksJSON, Money, Quantity, Units, UTCDateTime
from chalicelib.ledger.vocabulary import KINDS, MAX_ACTOR_LENGTH, MAX_REASON_LENGTH, REFERENCE_LENGTH
from chalicelib.states import BotStatus, Mode, PositionStatus, ScheduleStatus, SessionStatus, Side
from chalicelib.trading.symbols import split_pairs
from chalicelib.valuation import Mark

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: 64-bit ids on Postgres; SQLite's rowid alias must be spelled INTEGER to autoincrement.
BigId = BigInteger().with_variant(Integer(), "sqlite")

#: The ledger's kinds (``chalicelib.ledger.vocabulary``), listed in the database's CHECK constraint.
LEDGER_KINDS = KINDS


def _num(column: str) -> str:
    """A comparison that is numeric on Postgres (NUMERIC) and on SQLite (exact decimal text)."""
    return f"CAST({column} AS NUMERIC)"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TradingSession(Base):
    """One bot's account for life: a (symbol, timeframe, exchange, mode) traded by a strategy that may change.

    Caches the current balance, the units (``accounting``) and the last mark; the ledger is the record."""

    __tablename__ = "trading_sessions"
    __table_args__ = (
        CheckConstraint("mode IN ('paper', 'live')", name="mode"),
        CheckConstraint("status IN ('active', 'ended')", name="status"),
        CheckConstraint(f"{_num('initial_balance')} >= 0", name="initial_balance_not_negative"),
        CheckConstraint(f"{_num('available_balance')} >= 0", name="available_not_negative"),
        CheckConstraint(f"{_num('reserved_balance')} >= 0", name="reserved_not_negative"),
        Index(
            "uq_trading_sessions_one_active",
            "symbol",
            "timeframe",
            "exchange",
            "mode",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    strategy: Mapped[str] = mapped_column(String(64))
    #: the bot's symbols, comma-joined in its fixed order (``BTCUSDT,ETHUSDT``); see ``bots.BotSpec.symbols``
    symbol: Mapped[str] = mapped_column(String(200))
    timeframe: Mapped[str] = mapped_column(String(8))
    exchange: Mapped[str] = mapped_column(String(32))
    mode: Mapped[Mode] = mapped_column(String(8))
    status: Mapped[SessionStatus] = mapped_column(String(16))
    initial_balance: Mapped[Decimal] = mapped_column(Money())
    base_currency: Mapped[str] = mapped_column(String(8), server_default="USD")
    total_balance: Mapped[Decimal] = mapped_column(Money(), server_default="0")
    available_balance: Mapped[Decimal] = mapped_column(Money(), server_default="0")
    reserved_balance: Mapped[Decimal] = mapped_column(Money(), server_default="0")
    units: Mapped[Decimal] = mapped_column(Units(), server_default="0")
    unit_value: Mapped[Decimal] = mapped_column(Units(), server_default="1")
    peak_unit_value: Mapped[Decimal] = mapped_column(Units(), server_default="1")
    series_base: Mapped[Decimal] = mapped_column(Units(), server_default="1")
    net_contributions: Mapped[Decimal] = mapped_column(Money(), server_default="0")
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    #: per symbol, the close (in USD) of its newest applied candle — what its positions are marked at — and that
    #: candle's open time (the symbol's cursor); ``candle_cursor`` is the newest over all symbols
    marks: Mapped[dict[str, Mark]] = mapped_column(MarksJSON())
    #: the cursor of a pair with no candle applied yet: the candle before the account's first (set by the start
    #: cursor or by the first tick), so a pair late or failing at the start catches up from where the account began
    pairs_from: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: the market time of the newest applied candle (its close)
    market_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    candle_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_tick_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resumed_from_id: Mapped[int | None] = mapped_column(ForeignKey("trading_sessions.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def symbols(self) -> tuple[str, ...]:
        """The bot's pairs, in its fixed order (``symbol`` keeps them joined)."""
        return split_pairs(self.symbol)

    def __repr__(self) -> str:
        return f"<TradingSession #{self.id} {self.strategy} {self.symbol} {self.timeframe} {self.status}>"


class AccountBalance(Base):
    """The append-only ledger: one row per balance change, with the balance after it and why and who."""

    __tablename__ = "account_balances"
    __table_args__ = (
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in LEDGER_KINDS) + ")",
            name="kind",
        ),
        CheckConstraint(f"{_num('available_balance')} >= 0", name="available_not_negative"),
        CheckConstraint(f"{_num('reserved_balance')} >= 0", name="reserved_not_negative"),
        # One ledger row per (session, kind, reference): a trade or a request is never counted twice.
        UniqueConstraint("session_id", "kind", "reference"),
        Index("ix_account_balances_session_id_id", "session_id", "id"),
        Index("ix_account_balances_session_id_market_time", "session_id", "market_time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("trading_sessions.id"))
    base_currency: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(32))
    delta: Mapped[Decimal] = mapped_column(Money())
    total_balance: Mapped[Decimal] = mapped_column(Money())
    available_balance: Mapped[Decimal] = mapped_column(Money())
    reserved_balance: Mapped[Decimal] = mapped_column(Money())
    asset_balances: Mapped[dict[str, Any]] = mapped_column(JSON)
    reference: Mapped[str | None] = mapped_column(String(REFERENCE_LENGTH))
    #: units after the row, the value per unit, the performance index and the equity (marked at market_time)
    units: Mapped[Decimal] = mapped_column(Units())
    unit_value: Mapped[Decimal] = mapped_column(Units())
    performance_index: Mapped[Decimal] = mapped_column(Units())
    equity: Mapped[Decimal] = mapped_column(Money())
    #: the market time the row belongs to (a candle's close) and the wall-clock time it was recorded
    market_time: Mapped[datetime] = mapped_column(UTCDateTime())
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(MAX_ACTOR_LENGTH))
    updated_by_label: Mapped[str | None] = mapped_column(String(MAX_ACTOR_LENGTH))
    update_reason: Mapped[str] = mapped_column(String(MAX_REASON_LENGTH))


class Position(Base):
    """A position, open or closed. Its cost is what the ledger holds as reserved while it is open."""

    __tablename__ = "positions"
    __table_args__ = (
        CheckConstraint("side IN ('long', 'short')", name="side"),
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        CheckConstraint(f"{_num('entry_price')} > 0", name="entry_price_positive"),
        CheckConstraint(f"{_num('quantity')} > 0", name="quantity_positive"),
        CheckConstraint(f"{_num('cost')} > 0", name="cost_positive"),
        CheckConstraint(f"exit_price IS NULL OR {_num('exit_price')} > 0", name="exit_price_positive"),
        CheckConstraint(f"{_num('fees')} >= 0", name="fees_not_negative"),
        Index("ix_positions_session_id_status", "session_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("trading_sessions.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[Side] = mapped_column(String(8))
    status: Mapped[PositionStatus] = mapped_column(String(8))
    entry_price: Mapped[Decimal] = mapped_column(Money())
    quantity: Mapped[Decimal] = mapped_column(Quantity())
    cost: Mapped[Decimal] = mapped_column(Money())
    stop_loss: Mapped[Decimal | None] = mapped_column(Money())
    take_profit: Mapped[Decimal | None] = mapped_column(Money())
    entry_time: Mapped[datetime] = mapped_column(UTCDateTime())
    exit_price: Mapped[Decimal | None] = mapped_column(Money())
    exit_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    exit_reason: Mapped[str | None] = mapped_column(String(32))
    realized_pnl: Mapped[Decimal | None] = mapped_column(Money())
    fees: Mapped[Decimal] = mapped_column(Money(), server_default="0")
    #: the strategy that opened it and the version of its parameters or model (attribution survives a switch)
    strategy: Mapped[str | None] = mapped_column(String(64))
    strategy_version: Mapped[str | None] = mapped_column(String(64))


class Trade(Base):
    """A closed round trip. One per position (unique): a close is never recorded twice."""

    __tablename__ = "trades"
    __table_args__ = (
        CheckConstraint("side IN ('long', 'short')", name="side"),
        CheckConstraint(f"{_num('entry_price')} > 0", name="entry_price_positive"),
        CheckConstraint(f"{_num('exit_price')} > 0", name="exit_price_positive"),
        CheckConstraint(f"{_num('quantity')} > 0", name="quantity_positive"),
        CheckConstraint(f"{_num('fees')} >= 0", name="fees_not_negative"),
        UniqueConstraint("position_id"),
        Index("ix_trades_session_id_id", "session_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("trading_sessions.id"))
    position_id: Mapped[int | None] = mapped_column(ForeignKey("positions.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[Side] = mapped_column(String(8))
    entry_price: Mapped[Decimal] = mapped_column(Money())
    exit_price: Mapped[Decimal] = mapped_column(Money())
    quantity: Mapped[Decimal] = mapped_column(Quantity())
    entry_time: Mapped[datetime] = mapped_column(UTCDateTime())
    exit_time: Mapped[datetime] = mapped_column(UTCDateTime())
    realized_pnl: Mapped[Decimal] = mapped_column(Money())
    fees: Mapped[Decimal] = mapped_column(Money())
    exit_reason: Mapped[str] = mapped_column(String(32))
    #: the close of the candle the trade closed in, and when it was recorded
    market_time: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: the strategy that opened the position (and its version), copied from it
    strategy: Mapped[str | None] = mapped_column(String(64))
    strategy_version: Mapped[str | None] = mapped_column(String(64))


class TickLog(Base):
    """One row per (session, candle) applied: the database guarantees a candle is processed once."""

    __tablename__ = "tick_log"
    __table_args__ = (UniqueConstraint("session_id", "symbol", "candle_time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("trading_sessions.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    candle_time: Mapped[datetime] = mapped_column(UTCDateTime())
    close_price: Mapped[Decimal] = mapped_column(Money())
    decision: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: the candle's close time, and the account after it, marked at its close (empty on rows from before 0003)
    market_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    equity: Mapped[Decimal | None] = mapped_column(Money())
    units: Mapped[Decimal | None] = mapped_column(Units())
    unit_value: Mapped[Decimal | None] = mapped_column(Units())
    performance_index: Mapped[Decimal | None] = mapped_column(Units())
    #: how many ledger rows the account had when this candle was done (places the tick in the ledger's order)
    ledger_version: Mapped[int | None] = mapped_column(Integer)
    #: gross exposure after the candle: open positions marked at the marks (empty on rows from before 0005)
    exposure: Mapped[Decimal | None] = mapped_column(Money())


class Bot(Base):
    """A bot kept in the database (issue 14): what the dispatcher ticks. Its account is ``session_id`` once the
    first tick opened it; pausing stops the ticks and keeps the account; removing the bot keeps the account."""

    __tablename__ = "bots"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'paused')", name="status"),
        CheckConstraint(f"{_num('initial_capital')} > 0", name="initial_capital_positive"),
        UniqueConstraint("symbol", "timeframe", "exchange", "mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    strategy: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(200))
    timeframe: Mapped[str] = mapped_column(String(8))
    exchange: Mapped[str] = mapped_column(String(32))
    mode: Mapped[Mode] = mapped_column(String(8))
    initial_capital: Mapped[Decimal] = mapped_column(Money())
    status: Mapped[BotStatus] = mapped_column(String(16))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("trading_sessions.id"))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BotSeed(Base):
    """An ``ATB_BOTS`` entry already turned into a bot: seeded once, so a removed bot is not brought back."""

    __tablename__ = "bot_seeds"

    entry: Mapped[str] = mapped_column(String(200), primary_key=True)
    seeded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DepositSchedule(Base):
    """A deposit repeated every ``every`` from ``starts_at``; period k is due at ``starts_at + k × every`` and is
    applied once (ledger reference ``request:schedule:<id>:<k>``). ``next_period`` only saves re-checking."""

    __tablename__ = "deposit_schedules"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'paused')", name="status"),
        CheckConstraint(f"{_num('amount')} > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("trading_sessions.id"))
    amount: Mapped[Decimal] = mapped_column(Money())
    every: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[ScheduleStatus] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_period: Mapped[int] = mapped_column(Integer, server_default="0")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
