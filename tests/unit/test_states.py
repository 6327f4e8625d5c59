"""Statuses, sides and modes have one definition (chalicelib/states.py), and the database allows exactly it."""

from __future__ import annotations

import re

import pytest

from chalicelib import states
from chalicelib.api import schemas
from chalicelib.db.models import Base


@pytest.mark.parametrize(("table", "column", "words"), [
    ("trading_sessions", "status", states.SESSION_STATUSES),
    ("trading_sessions", "mode", states.MODES),
    ("positions", "side", states.SIDES),
    ("positions", "status", states.POSITION_STATUSES),
    ("trades", "side", states.SIDES),
    ("bots", "status", states.BOT_STATUSES),
    ("deposit_schedules", "status", states.SCHEDULE_STATUSES),
])
def test_the_database_check_allows_exactly_the_words_of_the_one_definition(table: str, column: str,
                                                                           words: tuple[str, ...]) -> None:
    checks = [str(c.sqltext) for c in Base.metadata.tables[table].constraints if hasattr(c, "sqltext")]
    (check,) = [c for c in checks if c.startswith(f"{column} IN")]
    assert set(re.findall(r"'([a-z_]+)'", check)) == set(words)


def test_the_api_documents_the_same_words() -> None:
    session = schemas.SessionOut.model_json_schema()["properties"]
    position = schemas.PositionOut.model_json_schema()["properties"]
    assert session["mode"]["enum"] == list(states.MODES) and session["status"]["enum"] == list(states.SESSION_STATUSES)
    assert position["side"]["enum"] == list(states.SIDES)
    assert position["status"]["enum"] == list(states.POSITION_STATUSES)
    bot = schemas.BotOut.model_json_schema()["properties"]
    assert bot["status"]["enum"] == list(states.BOT_STATUSES) and bot["mode"]["enum"] == list(states.MODES)
    assert schemas.BotPatch.model_json_schema()["properties"]["status"]["enum"] == list(states.BOT_STATUSES)
    schedule = schemas.ScheduleOut.model_json_schema()["properties"]
    assert schedule["status"]["enum"] == list(states.SCHEDULE_STATUSES)
