"""The memoised pg8000 placeholder rewrite (chalicelib/db/engine.py) gives exactly pg8000's own answer."""

from __future__ import annotations

import pg8000.dbapi
import pg8000.legacy
import pytest

from chalicelib.db import engine as engine_module

QUERIES = [
    "SELECT 1",
    "INSERT INTO t (a, b) VALUES (%s, %s)",
    "SELECT '%s' AS literal, %s AS value",
    "SELECT 100 %% 7, %s",
    "SELECT $$ %s $$, %s -- a %s comment\n, %s",
    'SELECT "weird %s name", %s FROM t WHERE x = E\'it\\\'s %s\'',
    "UPDATE trading_sessions SET total_balance=%s::NUMERIC(28, 8), version=%s WHERE trading_sessions.id = %s",
]


@pytest.mark.parametrize("query", QUERIES)
def test_the_cached_rewrite_matches_pg8000_for_the_format_paramstyle(query: str) -> None:
    engine_module._cache_pg8000_paramstyle()
    args = (1, "two", None)
    expected = pg8000.dbapi.convert_paramstyle("format", query, args)
    for _ in range(2):  # first computed, then served from the cache
        assert pg8000.legacy.convert_paramstyle("format", query, args) == expected


def test_other_paramstyles_are_passed_to_pg8000_untouched() -> None:
    engine_module._cache_pg8000_paramstyle()
    query = "SELECT :a, :b, :a"
    assert pg8000.legacy.convert_paramstyle("named", query, {"a": 1, "b": 2}) == \
        pg8000.dbapi.convert_paramstyle("named", query, {"a": 1, "b": 2})


def test_patching_twice_wraps_once() -> None:
    engine_module._cache_pg8000_paramstyle()
    patched = pg8000.legacy.convert_paramstyle
    engine_module._cache_pg8000_paramstyle()
    assert pg8000.legacy.convert_paramstyle is patched
