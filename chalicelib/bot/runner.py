"""Running a bot locally: ``LiveTradingEngine`` (the seed's programmatic interface) over the same tick the
scheduled Lambda runs.

With a replay feed each tick reveals the next recorded candle(s) after the session's cursor — "now" is derived
from the cursor, not from a clock — so ticks never wait and 500 ticks at once or 100 five times end in the same
state. With an exchange feed each tick uses the wall clock and :meth:`LiveTradingEngine.run` waits for the next
timeframe boundary between ticks; setting ``stop`` (the CLI does on Ctrl-C) ends the loop after the current tick.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine

from chalicelib.bot.sessions import LiveTradingDisabled, SessionError, SessionOpening, open_session
from chalicelib.bot.tick import Clock, TickResult, TickSettings, tick_session, wall_clock
from chalicelib.bots import BotSpec
from chalicelib.db.engine import get_engine
from chalicelib.db.types import utcnow
from chalicelib.ledger import SYSTEM, Actor
from chalicelib.money import parse_money
from chalicelib.trading.candles import floor_to_grid, timeframe_to_timedelta
from chalicelib.trading.feeds import Feed, ReplayFeed
from chalicelib.trading.strategies import Strategy, get_strategy
from chalicelib.trading.symbols import split_pairs

#: How long after a candle closes the exchange loop asks for it (exchanges publish a moment late).
SETTLE = timedelta(seconds=5)


class SchemaNotReady(SessionError):
    """The database is not at the newest schema revision."""


def prepare_database(engine: Engine, *, auto_migrate_sqlite: bool = True) -> str | None:
    """Make sure the schema is at head. An empty embedded SQLite file is migrated on the spot (first run);
    anything else behind head is refused with the command that fixes it. Returns what was done, if anything."""
    from chalicelib.db.migrate import schema_status, upgrade

    status = schema_status(engine)
    if status.at_head:
        return None
    if auto_migrate_sqlite and engine.dialect.name == "sqlite" and status.current is None:
        upgrade(engine)
        return f"Created the embedded database {engine.url.database} (schema {status.head})"
    where = engine.url.render_as_string(hide_password=True)
    raise SchemaNotReady(f"database {where} is at schema {status.current or 'none'}, not {status.head}: "
                         "run `atb db migrate`")


def replay_clock(feed: ReplayFeed, symbol: str, timeframe: str, step: int = 1) -> Clock:
    """"Now" for a replay tick: the close of the ``step``-th recorded candle after the session's cursor.

    A session without a cursor starts at the newest closed candle, so its first tick reveals exactly one. With
    several pairs (``symbol`` comma-joined, as sessions store it) the cursor is the newest candle applied over all
    of them and "now" the earliest at which some pair has revealed ``step`` more.
    """
    symbols = split_pairs(symbol)
    if len(symbols) > 1:
        return lambda cursor: feed.replay_now_all(timeframe, cursor, count=step if cursor is not None else 1)
    return lambda cursor: feed.replay_now(symbol, timeframe, cursor, count=step if cursor is not None else 1)


class LiveTradingEngine:
    """One bot: open (or recover) its session, then tick it — on the replay's pace or the exchange's clock.

    ``enable_live_trading=True`` is refused: real orders are not implemented and stay off.
    """

    def __init__(
        self,
        strategy: str | Strategy,
        data_provider: Feed | None = None,
        initial_balance: Decimal | int | str = 1000,
        resume_from_last_balance: bool = True,
        enable_live_trading: bool = False,
        *,
        symbol: str = "BTCUSDT",
        timeframe: str = "1h",
        exchange: str | None = None,
        fresh: bool = False,
        engine: Engine | None = None,
        settings: TickSettings | None = None,
        replay_step: int = 1,
        actor: Actor = SYSTEM,
        clock: Clock | None = None,
    ) -> None:
        if enable_live_trading:
            raise LiveTradingDisabled("live trading is not implemented: this bot only paper-trades")
        self.strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
        default_exchange = "replay" if data_provider is None or isinstance(data_provider, ReplayFeed) else "binance"
        exchange_id = exchange or str(getattr(data_provider, "exchange_id", default_exchange))
        self.spec = BotSpec(strategy=self.strategy.name, symbol=symbol, timeframe=timeframe, exchange=exchange_id)
        self.feed: Feed = (data_provider if data_provider is not None
                           else ReplayFeed.several(self.spec.symbols, self.spec.timeframe))
        self.initial_balance = parse_money(initial_balance, field="initial balance")
        if self.initial_balance < 0:
            raise SessionError("initial balance must not be negative")
        self.resume = resume_from_last_balance
        self.fresh = fresh
        self._engine = engine
        self.settings = settings or TickSettings()
        if isinstance(self.feed, ReplayFeed):
            self.clock = clock or replay_clock(self.feed, self.spec.symbol, timeframe, replay_step)
        else:
            self.clock = clock or wall_clock
        self.actor = actor
        self.opening: SessionOpening | None = None

    @property
    def is_replay(self) -> bool:
        return isinstance(self.feed, ReplayFeed)

    @property
    def session_id(self) -> int:
        if self.opening is None:
            raise SessionError("the engine has not started: call start() first")
        return self.opening.session_id

    @property
    def db_engine(self) -> Engine:
        """The database this bot trades in: the one given, else the configured one (resolved here, once)."""
        if self._engine is None:
            self._engine = get_engine()
        return self._engine

    def start(self) -> SessionOpening:
        """Find, resume or start the session and report what was recovered (logged, and returned)."""
        engine = self.db_engine
        prepare_database(engine)
        # A replayed account begins where the replay's first candle opens, in market time (not today's wall clock).
        first_close = self.clock(None) if self.is_replay else None
        market_time = first_close - timeframe_to_timedelta(self.spec.timeframe) if first_close is not None else None
        self.opening = open_session(engine, self.spec, initial_balance=self.initial_balance, resume=self.resume,
                                    fresh=self.fresh, actor=self.actor, market_time=market_time)
        self.fresh = False  # a restart of this object must not start over again
        return self.opening

    def tick(self) -> TickResult:
        """One tick: every closed candle not yet applied (replay: the next one), in one transaction."""
        if self.opening is None:
            self.start()
        return tick_session(self.db_engine, self.session_id, self.feed, clock=self.clock, strategy=self.strategy,
                            settings=self.settings)

    def results(self, ticks: int | None = None, stop: threading.Event | None = None,
                sleep: Callable[[float], bool] | None = None) -> Iterator[TickResult]:
        """Tick ``ticks`` times (forever when None), yielding each result. Replay stops when the data ends;
        the exchange loop waits for the next candle between ticks and ends when ``stop`` is set."""
        stop = stop or threading.Event()
        wait = sleep or stop.wait
        done = 0
        while (ticks is None or done < ticks) and not stop.is_set():
            result = self.tick()
            done += 1
            yield result
            if result.status in ("replay_finished", "inactive"):
                return  # the data ended, or the session was ended or switched elsewhere
            if self.is_replay or (ticks is not None and done >= ticks):
                continue
            if result.behind:
                continue  # still catching up: no need to wait
            wait(self.seconds_until_next_candle())

    def run(self, ticks: int | None = None, stop: threading.Event | None = None) -> list[TickResult]:
        return list(self.results(ticks, stop))

    def seconds_until_next_candle(self, now: datetime | None = None) -> float:
        now = now or utcnow()
        step = timeframe_to_timedelta(self.spec.timeframe)
        due = floor_to_grid(now, self.spec.timeframe) + step + SETTLE
        return max(0.0, (due - now).total_seconds())
