"""The closed sets of words for statuses, sides and modes: one definition that the models, the API's response
models (and so the OpenAPI document), the trading code and the checks import. The database's CHECK constraints
(migrations/) allow exactly these; a test keeps them equal. (Ledger kinds live with the ledger.)"""

from __future__ import annotations

from typing import Literal, get_args

#: A bot's account: trading, or stopped (its history stays readable).
SessionStatus = Literal["active", "ended"]
#: Paper trading; ``live`` is reserved in the schema and refused by every way in (not implemented).
Mode = Literal["paper", "live"]
#: A position's direction (the strategies only go long; the schema and the P&L rules know both).
Side = Literal["long", "short"]
PositionStatus = Literal["open", "closed"]
#: A bot kept in the database: ticked by the dispatcher, or paused (its account kept).
BotStatus = Literal["active", "paused"]
#: A deposit schedule: depositing every period, or paused.
ScheduleStatus = Literal["active", "paused"]

SESSION_STATUSES: tuple[SessionStatus, ...] = get_args(SessionStatus)
MODES: tuple[Mode, ...] = get_args(Mode)
SIDES: tuple[Side, ...] = get_args(Side)
POSITION_STATUSES: tuple[PositionStatus, ...] = get_args(PositionStatus)
BOT_STATUSES: tuple[BotStatus, ...] = get_args(BotStatus)
SCHEDULE_STATUSES: tuple[ScheduleStatus, ...] = get_args(ScheduleStatus)
