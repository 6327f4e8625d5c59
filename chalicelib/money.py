"""Exact money: every amount is a ``Decimal``; these helpers are the only place amounts are parsed or rounded.

Floats never carry money in this project. Parsing rejects NaN, Infinity, non-numeric text and amounts with
more decimals than the database stores, so a bad value fails loudly instead of being silently rounded.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation

#: Decimals kept for money (USD) and prices: NUMERIC(28, 8) in the database.
MONEY_SCALE = 8
#: Decimals kept for asset quantities: NUMERIC(28, 12).
QUANTITY_SCALE = 12

MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
QUANTITY_QUANTUM = Decimal(1).scaleb(-QUANTITY_SCALE)
#: Largest absolute amount accepted from a person (well inside NUMERIC(28, 8)).
MAX_AMOUNT = Decimal("1000000000000")  # one trillion
ZERO = Decimal(0)


class MoneyError(ValueError):
    """A value that cannot be an amount of money; the message says why in one line."""


def parse_decimal(value: object, *, field: str = "amount", max_places: int = MONEY_SCALE) -> Decimal:
    """Parse user input (text, int or Decimal; never float) into a finite Decimal with at most ``max_places``."""
    if isinstance(value, (bool, float)):
        raise MoneyError(f"{field} must be given as a decimal number or text, not a float")
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise MoneyError(f"{field} is empty")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise MoneyError(f"{field} is not a number: {value!r}") from None
    else:
        raise MoneyError(f"{field} must be a number, got {type(value).__name__}")
    if not result.is_finite():
        raise MoneyError(f"{field} must be a finite number, got {value}")
    exponent = result.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -max_places and result != result.quantize(Decimal(1).scaleb(-max_places), rounding=ROUND_DOWN):
        raise MoneyError(f"{field} has more than {max_places} decimal places: {value}")
    if abs(result) > MAX_AMOUNT:
        raise MoneyError(f"{field} is too large (at most {MAX_AMOUNT:,})")
    return result + 0  # normalise -0 to 0


def parse_money(value: object, *, field: str = "amount") -> Decimal:
    """Parse a money amount (8 decimals at most)."""
    return quantize_money(parse_decimal(value, field=field, max_places=MONEY_SCALE))


def quantize_money(value: Decimal) -> Decimal:
    """Round a computed amount to the stored money scale (banker's rounding, as accountants do)."""
    return value.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


def quantize_quantity(value: Decimal) -> Decimal:
    """Round an asset quantity down to the stored scale: never buy more than the cash allows."""
    return value.quantize(QUANTITY_QUANTUM, rounding=ROUND_DOWN)


def money_text(value: Decimal) -> str:
    """The canonical text of an amount: fixed-point, no exponent, trailing zeros kept to two places."""
    q = quantize_money(value)
    text = format(q.normalize(), "f")
    whole, _, frac = text.partition(".")
    frac = frac.ljust(2, "0")
    return f"{whole}.{frac}"


def format_usd(value: Decimal) -> str:
    """Human display: ``$1,250.00`` (two decimals, rounded half-even for display only)."""
    q = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    sign = "-" if q < 0 else ""
    return f"{sign}${abs(q):,.2f}"
