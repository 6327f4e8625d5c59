"""Bots kept in the database and scheduled deposits (issue 14): the use cases behind ``atb bots``, ``atb
schedules``, ``/api/bots``, ``/api/schedules`` and the dispatcher.

A bot definition is validated by :class:`chalicelib.bots.BotSpec` (one rule, one place); its identity (symbol,
timeframe, exchange, mode) is unique in the ``bots`` table. Its account (``trading_sessions``) is opened by its
first tick; pausing stops the ticks and keeps the account; removing the bot deletes the definition only.

A deposit schedule deposits ``amount`` into one account every ``every`` from ``starts_at``. Period k is due at
``starts_at + k × every`` and goes through the manual deposit's use case (``balances.change_balance``) with the
idempotency key ``schedule:<id>:<k>``: the ledger's unique reference makes each period count once, however
often or late the dispatcher runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chalicelib.api.schemas import BotOut, ScheduleOut
from chalicelib.bots import BotDefinitionError, BotSpec
from chalicelib.db.models import Bot, BotSeed, DepositSchedule, TradingSession
from chalicelib.db.types import utcnow
from chalicelib.db.uow import read_transaction, write_transaction
from chalicelib.ledger import Actor, LedgerError, SessionNotFound
from chalicelib.states import BOT_STATUSES, SCHEDULE_STATUSES, BotStatus, ScheduleStatus
from chalicelib.trading.candles import last_closed_open_time, timeframe_to_timedelta

#: How many missed periods one run catches up at most per schedule (the rest follow on the next run).
MAX_CATCH_UP = 100


class FleetError(LedgerError):
    """A bot or schedule request that cannot be done (bad input, unknown id): nothing changed."""

    code = "invalid_request"


class BotNotFound(FleetError):
    code = "bot_not_found"


class DuplicateBot(FleetError):
    code = "bot_exists"


class ScheduleNotFound(FleetError):
    code = "schedule_not_found"


def spec_of(bot: Bot) -> BotSpec:
    return BotSpec(strategy=bot.strategy, symbol=bot.symbol, timeframe=bot.timeframe, exchange=bot.exchange,
                   mode=bot.mode)


def _positive(amount: Decimal, what: str) -> Decimal:
    if amount <= 0:
        raise FleetError(f"{what} must be greater than zero")
    return amount


def _find(db: Session, spec: BotSpec) -> Bot | None:
    return db.execute(select(Bot).where(Bot.symbol == spec.symbol, Bot.timeframe == spec.timeframe,
                                        Bot.exchange == spec.exchange, Bot.mode == spec.mode)).scalar()


def add_bot(spec: BotSpec, initial_capital: Decimal, *, actor: Actor, engine: Engine,
            now: datetime | None = None) -> BotOut:
    """A new bot, active. Its identity must be new: :class:`DuplicateBot` otherwise (nothing written)."""
    _positive(initial_capital, "initial capital")
    when = now or utcnow()
    try:
        with write_transaction(engine) as db:
            existing = _find(db, spec)
            if existing is not None:
                raise DuplicateBot(f"bot #{existing.id} already trades {spec.symbol} {spec.timeframe} on "
                                   f"{spec.exchange} ({spec.mode}); a bot is its symbol, timeframe, exchange and mode")
            bot = Bot(strategy=spec.strategy, symbol=spec.symbol, timeframe=spec.timeframe, exchange=spec.exchange,
                      mode=spec.mode, initial_capital=initial_capital, status="active", created_by=actor.name,
                      created_at=when, updated_at=when)
            db.add(bot)
            db.flush()
            return BotOut.of(bot)
    except IntegrityError:  # a concurrent add of the same bot won the unique index
        raise DuplicateBot(f"a bot already trades {spec.symbol} {spec.timeframe} on {spec.exchange}") from None


def list_bots(engine: Engine) -> list[BotOut]:
    with read_transaction(engine) as db:
        rows = db.execute(select(Bot, TradingSession).outerjoin(TradingSession, TradingSession.id == Bot.session_id)
                          .order_by(Bot.id)).all()
        return [BotOut.of(bot, session) for bot, session in rows]


def set_bot_status(bot_id: int, status: BotStatus, *, engine: Engine) -> BotOut:
    """Pause (no more ticks, the account kept) or resume a bot."""
    if status not in BOT_STATUSES:
        raise FleetError(f"status must be one of {', '.join(BOT_STATUSES)}")
    with write_transaction(engine) as db:
        bot = db.get(Bot, bot_id, with_for_update=True)
        if bot is None:
            raise BotNotFound(f"no bot #{bot_id}")
        if bot.status != status:
            bot.status = status
            bot.updated_at = utcnow()
        return BotOut.of(bot)


def remove_bot(bot_id: int, *, engine: Engine) -> BotOut:
    """Delete the bot's definition; its account, ledger and trades stay (readable, and resumed if re-added)."""
    with write_transaction(engine) as db:
        bot = db.get(Bot, bot_id, with_for_update=True)
        if bot is None:
            raise BotNotFound(f"no bot #{bot_id}")
        view = BotOut.of(bot)
        db.delete(bot)
        return view


def attach_session(bot_id: int, session_id: int, engine: Engine) -> None:
    """Record the account the bot's first tick opened (a no-op once recorded)."""
    with write_transaction(engine) as db:
        bot = db.get(Bot, bot_id)
        if bot is not None and bot.session_id != session_id:
            bot.session_id = session_id


@dataclass(frozen=True)
class SeedOutcome:
    entry: str
    bot_id: int | None
    error: str | None


def seed_bots(entries: list[str], initial_capital: Decimal, *, engine: Engine) -> list[SeedOutcome]:
    """``ATB_BOTS`` on first deploy: each entry becomes a bot once (recorded in ``bot_seeds``, so a removed bot
    is not brought back). A bad entry, or a second entry for the same bot, is refused alone with its reason."""
    outcomes: list[SeedOutcome] = []
    seen: dict[tuple[str, str, str, str], str] = {}
    specs: list[tuple[str, BotSpec]] = []
    for entry in entries:
        try:
            spec = BotSpec.parse(entry)
            if spec.identity in seen:
                raise BotDefinitionError(f"bot {entry!r}: the same bot as {seen[spec.identity]!r} "
                                         "(a bot is its symbol, timeframe, exchange and mode)")
        except BotDefinitionError as exc:
            outcomes.append(SeedOutcome(entry, None, str(exc)))
            continue
        seen[spec.identity] = entry
        specs.append((entry, spec))
    if not specs:
        return outcomes
    with read_transaction(engine) as db:
        done = set(db.execute(select(BotSeed.entry).where(BotSeed.entry.in_([e[:200] for e, _ in specs])))
                   .scalars())
    for entry, spec in specs:
        if entry[:200] in done:
            outcomes.append(SeedOutcome(entry, None, None))
            continue
        with write_transaction(engine) as db:
            if db.get(BotSeed, entry[:200]) is None:
                db.add(BotSeed(entry=entry[:200], seeded_at=utcnow()))
                if _find(db, spec) is None:
                    now = utcnow()
                    db.add(Bot(strategy=spec.strategy, symbol=spec.symbol, timeframe=spec.timeframe,
                               exchange=spec.exchange, mode=spec.mode, initial_capital=initial_capital,
                               status="active", created_by="ATB_BOTS", created_at=now, updated_at=now))
        outcomes.append(SeedOutcome(entry, None, None))
    return outcomes


@dataclass(frozen=True)
class DueBot:
    bot_id: int
    label: str
    timeframe: str
    candle_open: datetime  # the newest closed candle's open time at ``now``
    stale: bool  # its newest applied candle closed two or more timeframes ago

    @property
    def candle_close(self) -> datetime:
        return self.candle_open + timeframe_to_timedelta(self.timeframe)


def due_bots(now: datetime, engine: Engine) -> tuple[list[DueBot], int]:
    """The active bots with a closed candle they have not applied at ``now`` (one read), and how many are stale:
    not ticked for two of their timeframes (the ``StaleBots`` alarm)."""
    due: list[DueBot] = []
    stale = 0
    with read_transaction(engine) as db:
        rows = db.execute(select(Bot, TradingSession.candle_cursor)
                          .outerjoin(TradingSession, TradingSession.id == Bot.session_id)
                          .where(Bot.status == "active").order_by(Bot.id)).all()
    for bot, cursor in rows:
        step = timeframe_to_timedelta(bot.timeframe)
        newest = last_closed_open_time(now, bot.timeframe)
        behind = cursor is None or cursor < newest
        is_stale = (cursor < newest - step) if cursor is not None else (bot.created_at <= now - 2 * step)
        stale += int(is_stale)
        if behind:
            due.append(DueBot(bot.id, f"{bot.strategy}:{bot.symbol}:{bot.timeframe}:{bot.exchange}", bot.timeframe,
                              newest, is_stale))
    return due, stale


def get_bot(bot_id: int, engine: Engine) -> Bot | None:
    with read_transaction(engine) as db:
        return db.get(Bot, bot_id)


# --- deposit schedules -----------------------------------------------------------------------------------------

_EVERY = re.compile(r"([1-9][0-9]{0,3})([hdw])")


def parse_every(text: str) -> timedelta:
    """``1h``, ``1d``, ``1w``, ``2w`` …: hours, days or weeks (at least one hour)."""
    match = _EVERY.fullmatch(str(text).strip())
    if not match:
        raise FleetError(f"--every must be a number of hours, days or weeks like 1d or 1w, not {str(text)[:20]!r}")
    unit = {"h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def next_deposit_at(s: DepositSchedule, now: datetime | None = None) -> datetime:
    """The next period's time; with ``now``, the first one after it (a due period is the dispatcher's to apply)."""
    step = parse_every(s.every)
    current = max(s.next_period, 0)
    upcoming = s.starts_at + step * current
    if now is not None:
        while upcoming <= now:  # a period already due is applied by the next dispatcher run; show the one after
            current += 1
            upcoming = s.starts_at + step * current
    return upcoming


def schedule_view(s: DepositSchedule, now: datetime | None = None) -> ScheduleOut:
    return ScheduleOut.of(s, next_deposit_at(s, now))


def add_schedule(amount: Decimal, every: str, reason: str, *, actor: Actor, session_id: int | None = None,
                 starts_at: datetime | None = None, engine: Engine) -> ScheduleOut:
    """A new schedule into the named (or the only active) account; the first deposit is due at ``starts_at``
    (default now: applied by the next dispatcher run)."""
    from chalicelib.balances import select_session
    from chalicelib.ledger import MAX_REASON_LENGTH

    _positive(amount, "amount")
    parse_every(every)
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise FleetError(f"reason must be 1–{MAX_REASON_LENGTH} characters")
    now = utcnow()
    with write_transaction(engine) as db:
        session = select_session(db, session_id)
        if session.status != "active":
            raise FleetError(f"session #{session.id} has ended; nothing can be deposited into it")
        schedule = DepositSchedule(session_id=session.id, amount=amount, every=every.strip(), reason=reason,
                                   status="active", starts_at=starts_at or now, next_period=0,
                                   created_by=actor.name, created_at=now)
        db.add(schedule)
        db.flush()
        return schedule_view(schedule, now)


def list_schedules(engine: Engine, now: datetime | None = None) -> list[ScheduleOut]:
    moment = now or utcnow()
    with read_transaction(engine) as db:
        return [schedule_view(s, moment)
                for s in db.execute(select(DepositSchedule).order_by(DepositSchedule.id)).scalars()]


def set_schedule_status(schedule_id: int, status: ScheduleStatus, *, engine: Engine) -> ScheduleOut:
    if status not in SCHEDULE_STATUSES:
        raise FleetError(f"status must be one of {', '.join(SCHEDULE_STATUSES)}")
    with write_transaction(engine) as db:
        schedule = db.get(DepositSchedule, schedule_id, with_for_update=True)
        if schedule is None:
            raise ScheduleNotFound(f"no schedule #{schedule_id}")
        schedule.status = status
        return schedule_view(schedule, utcnow())


def schedule_reference_key(schedule_id: int, period: int) -> str:
    """The idempotency key of one period's deposit (ledger reference ``request:<creator>:schedule:<id>:<period>``)."""
    return f"schedule:{schedule_id}:{period}"


@dataclass(frozen=True)
class AppliedDeposit:
    schedule_id: int
    period: int
    replayed: bool


def apply_due_deposits(now: datetime, *, engine: Engine) -> list[AppliedDeposit]:
    """Every due period of every active schedule, each through the manual deposit's use case, at most once
    (the reference). Missed runs are caught up (up to :data:`MAX_CATCH_UP` periods per schedule per run)."""
    from chalicelib.balances import change_balance

    applied: list[AppliedDeposit] = []
    with read_transaction(engine) as db:
        schedules = list(db.execute(select(DepositSchedule).where(DepositSchedule.status == "active")
                                    .order_by(DepositSchedule.id)).scalars())
    for s in schedules:
        step = parse_every(s.every)
        period = s.next_period
        done = period
        while period - s.next_period < MAX_CATCH_UP and s.starts_at + step * period <= now:
            try:
                result = change_balance("deposit", s.amount, reason=s.reason,
                                        actor=Actor(s.created_by, f"schedule #{s.id}"), session_id=s.session_id,
                                        idempotency_key=schedule_reference_key(s.id, period), engine=engine)
            except (LedgerError, SessionNotFound):
                break  # the account ended or is gone: nothing deposited, tried again next run
            applied.append(AppliedDeposit(s.id, period, result.replayed))
            period += 1
            done = period
        if done != s.next_period:
            with write_transaction(engine) as db:
                row = db.get(DepositSchedule, s.id, with_for_update=True)
                if row is not None and row.next_period < done:
                    row.next_period = done
    return applied

