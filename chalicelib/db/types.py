"""Column types that keep money exact and time in UTC on every database we run on.

PostgreSQL stores money in ``NUMERIC``. SQLite has no exact decimal type (its NUMERIC affinity turns text into a
15-digit REAL), so there the same columns hold the canonical decimal text: exact, and read back as ``Decimal``.
Timestamps are timezone-aware UTC everywhere; SQLite keeps them as naive UTC text and we re-attach UTC on read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine

from chalicelib.accounting import UNITS_SCALE
from chalicelib.money import MONEY_SCALE, QUANTITY_SCALE
from chalicelib.valuation import Mark


class ExactDecimal(TypeDecorator[Decimal]):
    """``NUMERIC(precision, scale)`` on Postgres; exact decimal text on SQLite."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 28, scale: int = MONEY_SCALE) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._context = Context(prec=precision + 2)
        self._quantum = Decimal(1).scaleb(-scale)  # made once: every money value read or written is quantized

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(self.precision + 2))
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("money and quantities are Decimal, never float")
        dec = Decimal(value)
        exact = dec.quantize(self._quantum, context=self._context)
        if dec != exact:
            raise ValueError(f"{dec} has more than {self.scale} decimal places")
        if dialect.name == "sqlite":
            return format(exact, "f")
        return dec

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        dec = value if isinstance(value, Decimal) else Decimal(str(value))  # PostgreSQL's NUMERIC: a Decimal already
        return dec.quantize(self._quantum, context=self._context)


def Money() -> ExactDecimal:
    return ExactDecimal(28, MONEY_SCALE)


def Quantity() -> ExactDecimal:
    return ExactDecimal(28, QUANTITY_SCALE)


def Units() -> ExactDecimal:
    """Units of an account, values per unit and the performance index: NUMERIC(38, 18)."""
    return ExactDecimal(38, UNITS_SCALE)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on Postgres; naive-UTC text on SQLite. Always aware UTC in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class MarksJSON(TypeDecorator[dict[str, Mark]]):
    """A session's marks (``chalicelib.valuation.Mark`` per symbol) as JSON of exact decimal text and ISO times:
    ``{"BTCUSDT": {"close": "60000.00000000", "cursor": "2024-01-01T00:00:00+00:00"}}``."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return {}
        return {symbol: {"close": format(mark.close, "f"), "cursor": mark.cursor.astimezone(UTC).isoformat()}
                for symbol, mark in value.items()}

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Mark]:
        if isinstance(value, str):  # a driver that hands JSON back as text
            value = json.loads(value)
        return {symbol: Mark(Decimal(item["close"]), datetime.fromisoformat(item["cursor"]))
                for symbol, item in (value or {}).items()
                if item.get("close") is not None and item.get("cursor") is not None}


def utcnow() -> datetime:
    return datetime.now(UTC)
