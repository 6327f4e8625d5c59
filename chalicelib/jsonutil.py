"""JSON with exact money: a ``Decimal`` is written as a JSON number from its decimal text, never via float.

The standard library cannot emit a Decimal as a bare number, and Chalice would turn it into a float, so the
API and the CLI serialise through ``dumps`` here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from chalicelib.money import money_text


def decimal_number(value: Decimal) -> str:
    """JSON number text of a Decimal: fixed-point, money keeps at least two decimals."""
    if not value.is_finite():
        raise ValueError(f"{value} cannot be written as JSON")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent >= -8:
        return money_text(value)
    return format(value.normalize(), "f")


def dumps(obj: Any, *, indent: int | None = None) -> str:
    parts: list[str] = []
    _write(obj, parts, indent, 0)
    return "".join(parts)


def _write(obj: Any, out: list[str], indent: int | None, level: int) -> None:
    if isinstance(obj, Decimal):
        out.append(decimal_number(obj))
    elif obj is None or isinstance(obj, (bool, int, str)):
        out.append(json.dumps(obj, ensure_ascii=False))
    elif isinstance(obj, float):
        raise TypeError("floats are not written by this project; use Decimal")
    elif isinstance(obj, datetime):
        out.append(json.dumps(obj.isoformat().replace("+00:00", "Z")))
    elif isinstance(obj, Mapping):
        items = list(obj.items())
        if not items:
            out.append("{}")
            return
        out.append("{")
        for i, (key, value) in enumerate(items):
            if i:
                out.append(",")
            _newline(out, indent, level + 1)
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(": ")
            _write(value, out, indent, level + 1)
        _newline(out, indent, level)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _newline(out, indent, level + 1)
            _write(value, out, indent, level + 1)
        _newline(out, indent, level)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _newline(out: list[str], indent: int | None, level: int) -> None:
    if indent is not None:
        out.append("\n" + " " * (indent * level))
    elif out and out[-1] == ",":
        out.append(" ")


def loads_exact(text: str | bytes) -> Any:
    """Parse JSON keeping every number exact (Decimal for non-integers)."""
    return json.loads(text, parse_float=Decimal)
