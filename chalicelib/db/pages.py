"""Keyset pagination, the one way a list is paged: newest first by id, ``before`` an id, a cursor for the next page.

A page asks for one row more than it shows: when that row exists, the last row shown is the next cursor (pass it
as ``before``); else the list has ended (cursor None). Keyset, not OFFSET, so a page costs the same however deep
it is and rows inserted meanwhile never shift a page.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")


def keyset_page(db: Session, stmt: Select[T], key: InstrumentedAttribute[Any], *, limit: int,
                before: int | None) -> tuple[list[T], int | None]:
    """Up to ``limit`` rows of ``stmt`` with ``key`` below ``before``, newest (highest key) first, and the cursor
    of the next page (the last shown key) or None at the end."""
    if before is not None:
        stmt = stmt.where(key < before)
    rows = list(db.execute(stmt.order_by(key.desc()).limit(limit + 1)).scalars())
    cursor = getattr(rows[limit - 1], key.key) if len(rows) > limit else None
    return rows[:limit], cursor
