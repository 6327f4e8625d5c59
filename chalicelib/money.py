"""Exact money: every amount is a ``Decimal``; these helpers are the only place amounts are parsed or rounded.

Floats never carry money in this project. Parsing rejects NaN, Infinity, non-numeric text and amounts with
more decimals than the database stores, so a bad value fails loudly instead of being silently rounded.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

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


def parse_decimal(value: object, *, field: str, max_places: int) -> Decimal:
    """Parse user input (text, int or Decimal; never float) into a finite Decimal with at most ``max_places``.

    Any size or precision is refused with a ``MoneyError`` (``decimal.InvalidOperation`` and ``Overflow`` are not
    ``ValueError`` subclasses): the checks read the digits and exponent exactly and do no arithmetic in the
    decimal context until the value is known to fit.
    """
    if isinstance(value, (bool, float)):
        raise MoneyError(f"{field} must be given as a decimal number or text, not a float")
    try:
        if isinstance(value, int):
            if value.bit_length() > 64:
                raise MoneyError(f"{field} is too large (at most {MAX_AMOUNT:,})")
            result = Decimal(value)
        elif isinstance(value, Decimal):
            result = value
        elif isinstance(value, str):
            text = value.strip()
            if not text:
                raise MoneyError(f"{field} is empty")
            if len(text) > 100:
                raise MoneyError(f"{field} is not a number of a sensible size ({len(text)} characters)")
            try:
                result = Decimal(text)
            except ArithmeticError:  # InvalidOperation: syntax, or an exponent beyond what Decimal can hold
                raise MoneyError(f"{field} is not a number: {_shown(value)}") from None
        else:
            raise MoneyError(f"{field} must be a number, got {type(value).__name__}")
        if not result.is_finite():
            raise MoneyError(f"{field} must be a finite number, got {_shown(value)}")
        if result.is_zero():
            return Decimal(0)
        if result.adjusted() > MAX_AMOUNT.adjusted() or result.copy_abs() > MAX_AMOUNT:
            raise MoneyError(f"{field} is too large (at most {MAX_AMOUNT:,})")
        digits, exponent = result.as_tuple().digits, result.as_tuple().exponent
        assert isinstance(exponent, int)
        trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if exponent + trailing_zeros < -max_places:
            raise MoneyError(f"{field} has more than {max_places} decimal places: {_shown(value)}")
        return result + 0  # fits: at most 13 + max_places significant digits, so this is exact
    except ArithmeticError:  # a decimal signal on a value no check above foresaw: still the caller's mistake
        raise MoneyError(f"{field} is not a number this service can hold") from None


def _shown(value: object) -> str:
    """The offending input for a message, cut short (a million-digit number is not echoed back)."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} characters)"


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
