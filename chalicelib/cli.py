"""``atb``: the command line of the bot. Thin: parse and check arguments, call one use case, print.

Exit codes: 0 success, 1 a check failed (``atb db verify``) or the operation was refused, 2 bad input (one line
on stderr, nothing changed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from chalicelib.ids import MAX_BIGINT_ID, MAX_INT_ID
from chalicelib.ledger.vocabulary import MAX_PAGE
from chalicelib.money import MoneyError, format_usd, parse_money, quantize_money

if TYPE_CHECKING:
    from chalicelib.api.schemas import BotOut
    from chalicelib.states import BotStatus

F = TypeVar("F", bound=Callable[..., Any])
EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
AMOUNT_ARG = {"ignore_unknown_options": True}  # so "-5" reaches our parser and gets a clear error


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


#: Commands that may run on a database that does not exist or is not migrated yet: they create or migrate it
#: (``live`` on first run; ``backtest``, ``check`` and ``optimize`` in throwaway files), report that it is behind
#: (``db status``), or check their arguments before they require it (``sessions start``).
_NO_SCHEMA_NEEDED = {"db_migrate", "db_status", "live", "backtest", "sessions_start", "check_command", "optimize"}


def debug_enabled() -> bool:
    """``atb --debug …`` or ``ATB_DEBUG=1``: let exceptions through with their traceback."""
    from chalicelib import settings

    context = click.get_current_context(silent=True)
    flag = bool(context and context.find_root().params.get("debug"))
    if flag:
        return True
    try:
        return settings.get().debug
    except settings.ConfigurationError:
        return False


def domain_errors(func: F) -> F:
    """The CLI's one error wrapper: every refusal, wrong setting, outage or unmigrated database becomes one
    ``error:`` line on stderr — exit 2 for bad input or configuration, 1 for a refusal or an unreachable
    service — and a command that needs the schema checks it first, so a failed command creates nothing (not
    even an empty SQLite file). ``--debug`` (or ``ATB_DEBUG=1``) shows the traceback instead."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from chalicelib.ledger import InsufficientFunds, LedgerError
        from chalicelib.settings import ConfigurationError

        try:
            if func.__name__ not in _NO_SCHEMA_NEEDED:
                _require_schema()
            return func(*args, **kwargs)
        except InsufficientFunds as exc:
            fail(str(exc), EXIT_REFUSED)
        except LedgerError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except ConfigurationError as exc:
            _reraise_if_debugging()
            fail(str(exc), EXIT_BAD_INPUT)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            _reraise_if_debugging()
            _fail_for(exc)

    return wrapper  # type: ignore[return-value]


def _reraise_if_debugging() -> None:
    if debug_enabled():
        raise  # noqa: PLE0704 - called only from an except block: re-raise what it caught


def _fail_for(exc: Exception) -> NoReturn:
    """One line for an exception the domain did not name: a database problem says what to do; anything else is
    a bug, reported as one (with the way to see its traceback)."""
    from chalicelib.db.errors import describe

    problem = describe(exc)
    if problem is not None:
        code = EXIT_REFUSED if problem.kind in ("busy", "unavailable") else EXIT_BAD_INPUT
        fail(problem.message, code)
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    if type(exc).__name__ == "RuntimeError" and first_line:  # a refusal raised with a message (e.g. a migration)
        fail(first_line, EXIT_REFUSED)
    fail(f"unexpected {type(exc).__name__}: {first_line} (run `atb --debug …` to see the traceback)", EXIT_REFUSED)


def _require_schema() -> None:
    """Fail unless the configured database exists and its schema is at head (checked before any write)."""
    from chalicelib import settings
    from chalicelib.db.engine import check_url, get_engine, missing_sqlite_file
    from chalicelib.db.migrate import schema_status

    url = settings.database_url()
    check_url(url)
    missing = missing_sqlite_file(url)
    if missing is not None:
        fail(f"no database at {missing}: run `atb db migrate` to create it (or set DATABASE_URL)")
    status = schema_status(get_engine(url))
    if not status.at_head:
        fail(f"the database schema is at {status.current or 'nothing (empty database)'}, not {status.head}: "
             "run `atb db migrate`")


def amount_arg(value: str, what: str = "amount") -> Decimal:
    try:
        amount = parse_money(value, field=what)
    except MoneyError as exc:
        fail(str(exc))
    return amount


def reason_arg(value: str | None) -> str:
    from chalicelib.ledger import MAX_REASON_LENGTH

    if value is None or not value.strip():
        fail("--reason must not be empty: say why the balance changes")
    if len(value.strip()) > MAX_REASON_LENGTH:
        fail(f"--reason is longer than {MAX_REASON_LENGTH} characters")
    from chalicelib.api.schemas import clean_text

    try:
        return clean_text(value).strip()
    except ValueError as exc:
        fail(f"--reason {exc}")


def print_json(obj: Any) -> None:
    from chalicelib.jsonutil import dumps

    click.echo(dumps(obj, indent=2))


def operator_name() -> str:
    import getpass

    from chalicelib import settings

    return settings.get().operator or f"cli:{getpass.getuser()}"


class AtbGroup(click.Group):
    """Click's usage errors (an option out of range, a missing argument, an unknown command) as the one-line
    ``error: …`` every other mistake gets, exit 2, instead of click's usage block."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "atb"
            fail(f"{exc.format_message()} (see `{where} --help`)", EXIT_BAD_INPUT)


@click.group(cls=AtbGroup)
@click.version_option(package_name="atb")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error (also ATB_DEBUG=1).")
def main(debug: bool) -> None:
    """atb — a paper-trading bot whose money you can trust."""
    from chalicelib import settings

    try:
        settings.get()  # every setting checked at start: a bad one is one line and exit 2, before any work
    except settings.ConfigurationError as exc:
        if debug:
            raise
        fail(str(exc))


# --- db ------------------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Schema migrations and integrity checks."""


@db.command("migrate")
@domain_errors
def db_migrate() -> None:
    """Upgrade the database schema to the newest revision."""
    from chalicelib.db.engine import get_engine
    from chalicelib.db.migrate import schema_status, upgrade

    engine = get_engine()
    before = schema_status(engine).current
    status = upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    if before == status.current:
        click.echo(f"Database {where} already at {status.current} (head).")
    else:
        click.echo(f"Migrated {where} from {before or 'empty'} to {status.current} (head).")


@db.command("status")
@domain_errors
def db_status() -> None:
    """Show the current schema revision and the newest one."""
    from chalicelib import settings
    from chalicelib.db.engine import check_url, missing_sqlite_file
    from chalicelib.db.migrate import SchemaStatus, head_revision, schema_status

    url = settings.database_url()
    check_url(url)
    missing = missing_sqlite_file(url)  # report "none" without creating the file by connecting
    status = SchemaStatus(current=None, head=head_revision()) if missing else schema_status()
    state = "up to date" if status.at_head else "behind: run `atb db migrate`"
    click.echo(f"current: {status.current or 'none (empty database)'}\nhead:    {status.head}\n{state}")
    if not status.at_head:
        sys.exit(EXIT_REFUSED)


@db.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@domain_errors
def db_verify(as_json: bool) -> None:
    """Check the schema is at head and every session's ledger adds up; exit 1 on any violation."""
    from chalicelib.db.engine import get_engine
    from chalicelib.verify import verify

    report = verify(get_engine())
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "schema": {"current": report.schema.current, "head": report.schema.head},
                "sessions": [
                    {"session_id": s.session_id, "label": s.label, "entries": s.entries,
                     "total_balance": s.total, "ok": s.ok, "problems": s.problems}
                    for s in report.sessions
                ],
            }
        )
    else:
        schema = report.schema
        mark = "ok" if schema.at_head else "BEHIND (run `atb db migrate`)"
        click.echo(f"schema: {schema.current or 'none'} (head {schema.head}) {mark}")
        for s in report.sessions:
            if s.ok:
                click.echo(f"session #{s.session_id} {s.label}: ok — {s.entries} ledger rows, "
                           f"balance {format_usd(s.total)}")
            else:
                click.echo(f"session #{s.session_id} {s.label}: FAILED")
                for problem in s.problems:
                    click.echo(f"  - {problem}")
        if not report.sessions and schema.at_head:
            click.echo("no sessions yet")
        click.echo("verify: ok" if report.ok else "verify: FAILED")
    if not report.ok:
        sys.exit(EXIT_REFUSED)


# --- balance ---------------------------------------------------------------------------------------------------

session_option = click.option("--session", "session_id", type=click.IntRange(1, MAX_INT_ID), default=None,
                              help="Session id (needed when several sessions are active).")


@main.group()
def balance() -> None:
    """Read and change the trading capital."""


@balance.command("show")
@session_option
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def balance_show(session_id: int | None, as_json: bool) -> None:
    """The current balance, its 24-hour change, the asset breakdown and exposure, and the last change."""
    from chalicelib import accounting, valuation
    from chalicelib.api.schemas import BalanceResponse
    from chalicelib.balances import read_summary
    from chalicelib.db.engine import get_engine

    summary = read_summary(session_id, engine=get_engine())
    if as_json:
        print_json(BalanceResponse.of(summary).body())
        return
    s = summary.session
    change = summary.change_24h_percent
    twr = summary.time_weighted_return
    click.echo(f"Session #{s.id} {s.strategy} {s.symbol} {s.timeframe} ({s.mode}), market time "
               f"{summary.now.market_time:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  balance:     {format_usd(s.total_balance)} {s.base_currency}   equity "
               f"{format_usd(summary.now.equity)}   available {format_usd(s.available_balance)}   reserved "
               f"{format_usd(s.reserved_balance)}")
    click.echo(f"  24h:         performance {_pct(change)} (capital flows excluded); change "
               f"{_signed_usd(summary.balance_delta_24h)} = flows {_signed_usd(summary.window.net_flows)} "
               f"+ P&L {_signed_usd(summary.pnl_24h)}")
    click.echo(f"  since start: time-weighted return {_pct(accounting.percent(twr))}, P&L "
               f"{_signed_usd(summary.total_pnl)}; drawdown {summary.drawdown * 100:.2f}% from the peak value per unit")
    def _share(value: Decimal | None) -> str:  # a share of equity (0.25) as 25.00 %; n/a without equity
        return "n/a" if value is None else f"{value * 100:.2f}%"

    wallet = summary.wallet
    for symbol in wallet.symbols:
        mark = wallet.marks.get(symbol)
        click.echo(f"  mark:        {symbol} " + ("no candle applied yet" if mark is None else
                                                  f"{format_usd(mark.close)} (candle {mark.cursor:%Y-%m-%d %H:%M}"
                                                  f" UTC; {valuation.priced_as(symbol, wallet.symbols)})"))
    click.echo(f"  {'asset':<6} {'quantity':>18} {'price':>14} {'value':>14} {'share':>8}")
    for a in wallet.assets:
        quantity = format_usd(a.quantity) if a.asset == valuation.ACCOUNT_CURRENCY else f"{a.quantity.normalize():f}"
        click.echo(f"  {a.asset:<6} {quantity:>18} {format_usd(a.price):>14} {format_usd(a.value):>14} "
                   f"{_share(a.share_of_equity):>8}")
    for e in wallet.exposure:
        click.echo(f"  exposure {e.asset}: gross {format_usd(e.gross)} ({_share(e.gross_share)}), net "
                   f"{format_usd(e.net)} ({_share(e.net_share)}) of equity")
    if summary.latest is not None:
        click.echo(f"  last change: {summary.latest.update_reason} ({summary.latest.updated_by}, "
                   f"{summary.latest.last_updated:%Y-%m-%d %H:%M} UTC)")


def _pct(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:+}%"


def _signed_usd(value: Decimal) -> str:
    return ("+" if value >= 0 else "") + format_usd(value)


def _change(op: str, amount: str, reason: str | None, session_id: int | None, as_json: bool) -> None:
    from chalicelib.api.schemas import LedgerEntry, SessionOut
    from chalicelib.balances import change_balance
    from chalicelib.db.engine import get_engine
    from chalicelib.ledger import Actor

    value = amount_arg(amount, "balance" if op == "set" else "amount")
    if op == "set" and value < 0:
        fail("balance must not be negative")
    if op != "set" and value <= 0:
        fail("amount must be greater than zero")
    why = reason_arg(reason)
    result = change_balance(op, value, reason=why, actor=Actor(operator_name()),  # type: ignore[arg-type]
                            session_id=session_id, engine=get_engine())
    if as_json:
        print_json({"session": SessionOut.of(result.session).body(), "entry": LedgerEntry.of(result.entry).body()})
        return
    e = result.entry
    click.echo(f"Session #{result.session.id}: {e.kind} {format_usd(e.delta)} → balance "
               f"{format_usd(e.total_balance)} (ledger row {e.id}, by {e.updated_by}: {e.update_reason})")


@balance.command("set", context_settings=AMOUNT_ARG)
@click.argument("amount")
@click.option("--reason", required=False, help="Why (required).")
@session_option
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def balance_set(amount: str, reason: str | None, session_id: int | None, as_json: bool) -> None:
    """Set the total balance to AMOUNT (the ledger records the difference)."""
    _change("set", amount, reason, session_id, as_json)


@balance.command("deposit", context_settings=AMOUNT_ARG)
@click.argument("amount")
@click.option("--reason", required=False, help="Why (required).")
@session_option
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def balance_deposit(amount: str, reason: str | None, session_id: int | None, as_json: bool) -> None:
    """Add AMOUNT to the trading capital."""
    _change("deposit", amount, reason, session_id, as_json)


@balance.command("withdraw", context_settings=AMOUNT_ARG)
@click.argument("amount")
@click.option("--reason", required=False, help="Why (required).")
@session_option
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def balance_withdraw(amount: str, reason: str | None, session_id: int | None, as_json: bool) -> None:
    """Take AMOUNT out of the trading capital (never more than is available)."""
    _change("withdraw", amount, reason, session_id, as_json)


@balance.command("history")
@session_option
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=20, show_default=True)
@click.option("--before", type=click.IntRange(1, MAX_BIGINT_ID), default=None,
              help="Show entries older than this ledger id.")
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def balance_history(session_id: int | None, limit: int, before: int | None, as_json: bool) -> None:
    """The ledger, newest first."""
    from chalicelib.api.schemas import LedgerEntry
    from chalicelib.balances import history_page, select_session
    from chalicelib.db.uow import read_transaction

    with read_transaction() as dbs:
        session = select_session(dbs, session_id)
        rows, next_cursor = history_page(dbs, session.id, limit=limit, before=before)
    if as_json:
        print_json({"session_id": session.id, "entries": [LedgerEntry.of(r).body() for r in rows],
                    "next_cursor": next_cursor})
        return
    click.echo(f"Session #{session.id} — {len(rows)} entries, newest first (market time, then what and why)")
    for r in rows:
        who = r.updated_by + (f" ({r.updated_by_label})" if r.updated_by_label else "")
        click.echo(f"{r.id:>8}  {r.market_time:%Y-%m-%d %H:%M}  {r.kind:<22} {format_usd(r.delta):>14}  "
                   f"→ {format_usd(r.total_balance):>14}  {who}: {r.update_reason} "
                   f"(recorded {r.last_updated:%Y-%m-%d %H:%M:%S})")
    if next_cursor:
        click.echo(f"more: atb balance history --before {next_cursor}")


# --- sessions --------------------------------------------------------------------------------------------------


@main.group()
def sessions() -> None:
    """Trading sessions (one per strategy, symbol, timeframe and mode)."""


@sessions.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="Include ended sessions.")
@domain_errors
def sessions_list(as_json: bool, show_all: bool) -> None:
    """List sessions."""
    from sqlalchemy import select

    from chalicelib.api.schemas import SessionOut
    from chalicelib.db.models import TradingSession
    from chalicelib.db.uow import read_transaction

    with read_transaction() as dbs:
        stmt = select(TradingSession).order_by(TradingSession.id)
        if not show_all:
            stmt = stmt.where(TradingSession.status == "active")
        rows = list(dbs.execute(stmt).scalars())
    if as_json:
        print_json([SessionOut.of(s).body() for s in rows])
        return
    if not rows:
        click.echo("no sessions" if show_all else "no active sessions (use --all to see ended ones)")
    for s in rows:
        click.echo(f"#{s.id:<5} {s.status:<7} {s.strategy:<14} {s.symbol:<10} {s.timeframe:<4} {s.mode:<6} "
                   f"{format_usd(s.total_balance):>14}  cursor {s.candle_cursor or '-'}")


@sessions.command("start", context_settings=AMOUNT_ARG)
@click.argument("strategy")
@click.option("--symbol", "symbols", multiple=True, required=True,
              help="Market; repeat it (or write BTCUSDT,ETHUSDT) for one wallet trading several pairs.")
@click.option("--timeframe", default="1h", show_default=True)
@click.option("--exchange", default="binance", show_default=True)
@click.option("--initial-balance", default="1000", show_default=True)
@click.option("--paper-trading/--live-trading", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def sessions_start(strategy: str, symbols: tuple[str, ...], timeframe: str, exchange: str, initial_balance: str,
                   paper_trading: bool, as_json: bool) -> None:
    """Start a bot's session and record its initial capital in the ledger; a bot that already has one keeps it."""
    import logging

    from chalicelib.api.schemas import SessionOut
    from chalicelib.bot.observability import use_plain_logs
    from chalicelib.bot.sessions import SessionError, open_session
    from chalicelib.db.engine import get_engine
    from chalicelib.db.models import TradingSession
    from chalicelib.db.uow import read_transaction

    if not paper_trading:
        fail("live trading is disabled: this bot only paper-trades")
    amount = amount_arg(initial_balance, "initial balance")
    if amount < 0:
        fail("initial balance must not be negative")
    spec = _bot_arg(strategy, _symbols_arg(symbols), timeframe, exchange)
    _require_schema()  # after the bot is checked: a bad definition says what is wrong with it first
    use_plain_logs(logging.WARNING)
    engine = get_engine()
    try:
        opening = open_session(engine, spec, initial_balance=amount, resume=True, actor=_actor())
    except SessionError as exc:
        fail(str(exc), EXIT_REFUSED)
    note = _existing_account_note(opening)
    if as_json:
        with read_transaction(engine) as dbs:
            session = dbs.get(TradingSession, opening.session_id)
            assert session is not None
            print_json(SessionOut.of(session).body())
    elif opening.how == "found":
        click.echo(f"Session #{opening.session_id} ({spec.label}) already exists with balance "
                   f"{format_usd(opening.total_balance)}: nothing started")
    elif opening.how == "resumed":
        for line in opening.lines():
            click.echo(line)
    else:
        click.echo(f"Started session #{opening.session_id}: {spec.strategy} {spec.symbol} {spec.timeframe} paper, "
                   f"initial balance {format_usd(amount)}")
    if note and not as_json:
        click.echo(note)


@sessions.command("stop")
@session_option
@domain_errors
def sessions_stop(session_id: int | None) -> None:
    """End a session. Its balance, positions and history stay readable."""
    from chalicelib import ledger
    from chalicelib.balances import select_session
    from chalicelib.db.types import utcnow
    from chalicelib.db.uow import write_transaction

    with write_transaction() as dbs:
        target = select_session(dbs, session_id)
        session = ledger.lock_session(dbs, target.id)
        assert session is not None
        if session.status != "active":
            fail(f"session #{session.id} has already ended", EXIT_REFUSED)
        session.status = "ended"
        session.ended_at = utcnow()
    click.echo(f"Stopped session #{session.id} at balance {format_usd(session.total_balance)}")


# --- trading: live, backtest, switch-strategy (issue 3) -------------------------------------------------------


def _load_strategy_paths(_ctx: click.Context, _param: click.Parameter, paths: tuple[str, ...]) -> tuple[str, ...]:
    from chalicelib.trading.strategies import StrategyLoadError, add_strategy_path

    for path in paths:
        try:
            add_strategy_path(path)
        except StrategyLoadError as exc:
            fail(str(exc))
    return paths


#: ``--strategy-path DIR`` (repeatable, or ``ATB_STRATEGY_PATH=DIR1:DIR2``): load user strategies from DIR first.
strategy_path_option = click.option(
    "--strategy-path", "strategy_paths", multiple=True, type=click.Path(file_okay=False, path_type=str),
    envvar="ATB_STRATEGY_PATH", is_eager=True, expose_value=False, callback=_load_strategy_paths,
    help="Directory of strategy files to load (repeatable; also ATB_STRATEGY_PATH). See docs/lab.md.")


def _strategy_arg(name: str) -> str:
    from chalicelib.trading.strategies import UnknownStrategyError, require_strategy

    try:
        return require_strategy(name)
    except UnknownStrategyError as exc:
        fail(str(exc))


def _bot_arg(strategy: str, symbol: str, timeframe: str, exchange: str) -> Any:
    """The bot these arguments define (a ``BotSpec``), or exit 2 with the one-line reason it cannot run."""
    from chalicelib.bots import BotDefinitionError, BotSpec

    try:
        return BotSpec(strategy=strategy, symbol=symbol, timeframe=timeframe, exchange=exchange)
    except BotDefinitionError as exc:
        fail(str(exc))


def _symbols_arg(values: tuple[str, ...] | str) -> str:
    """``--symbol`` given once or repeated (each may itself list pairs: ``BTCUSDT,ETHUSDT``) as the one text a
    ``BotSpec`` reads; the spec checks and orders the pairs."""
    return values if isinstance(values, str) else ",".join(values)


def _data_arg(values: tuple[str, ...], symbols: tuple[str, ...]) -> dict[str, str]:
    """``--data SYMBOL=FILE`` (repeatable) as {symbol: file}; a plain ``--data FILE`` names the file of a one-pair
    bot. Which pairs the bot trades is checked by the replay itself (``ReplayFeed.several``)."""
    from pathlib import Path

    from chalicelib.trading.symbols import SymbolError, parse_symbol

    files: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and not Path(value).exists():
            try:
                symbol = parse_symbol(name).plain
            except SymbolError as exc:
                fail(f"--data {value!r}: {exc} (write --data SYMBOL=FILE)")
            if not path:
                fail(f"--data {value!r}: name the file after '=' (--data SYMBOL=FILE)")
        elif len(symbols) > 1:
            fail(f"--data {value!r}: the bot trades {', '.join(symbols)}; say which pair the file holds with "
                 "--data SYMBOL=FILE")
        else:
            symbol, path = symbols[0], value
        if symbol in files:
            fail(f"--data gives two files for {symbol}")
        files[symbol] = path
    return files


def _one_pair(strategy: str, symbols: tuple[str, ...], timeframe: str, tool: str) -> Any:
    """The bot of a single-pair tool (``atb check``, ``atb optimize``), or exit 2 when it names several pairs."""
    spec = _bot_arg(strategy, _symbols_arg(symbols), timeframe, "replay")
    if len(spec.symbols) > 1:
        fail(f"{tool} works on one pair at a time, not {spec.symbol}: give one --symbol (`atb backtest` takes "
             "several)")
    return spec


def _given(name: str) -> bool:
    """Whether the user passed option ``name`` (rather than its default)."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source is not ParameterSource.DEFAULT


def _existing_account_note(opening: Any) -> str | None:
    """Why an explicit --initial-balance did nothing: the bot's account already exists."""
    if opening.how not in ("found", "resumed") or not _given("initial_balance"):
        return None
    return (f"--initial-balance ignored: account #{opening.session_id} already exists with "
            f"{format_usd(opening.total_balance)}; --initial-balance applies only to a new account")


def _print_tick(result: Any, verbose: bool, several: bool = False) -> None:
    """One tick as lines: each candle applied (with its pair when the bot trades several) and its fills, the pairs
    left out of the tick and why."""
    from chalicelib.bot.tick import describe_fill
    from chalicelib.trading.candles import format_time

    if result.status == "applied":
        for gap in result.gaps:
            click.echo(f"  gap in market data, skipped over: {gap}")
        last_of = {o.symbol: o for o in result.outcomes}  # each pair's newest candle is always shown
        for o in result.outcomes:
            if not verbose and not o.fills and o is not last_of[o.symbol] and o.decision == "hold":
                continue
            pair = f"  {o.symbol:<9}" if several else ""
            line = (f"{format_time(o.candle_time)}{pair}  close {format_usd(o.close):>12}  {o.decision:<10}  "
                    f"balance {format_usd(o.balance)}  equity {format_usd(o.equity)}")
            click.echo(line + (f"  ({o.detail})" if verbose and o.detail else ""))
            for fill in o.fills:
                click.echo(f"    {o.symbol + ' ' if several else ''}{describe_fill(fill)}")
        if len({o.candle_time for o in result.outcomes}) > 1:  # catching up (one hour of every pair is one step)
            click.echo(f"  applied {result.candles_applied} candles in this tick"
                       + ("; more are waiting for the next tick" if result.behind else ""))
    elif result.status == "up_to_date":
        click.echo("up to date: no new closed candle yet")
    elif result.status == "locked":
        click.echo("another tick holds this session right now; skipped")
    elif result.status == "replay_finished":
        click.echo("replay finished: no more recorded candles")
    else:
        click.echo(f"tick {result.status}: {result.message}", err=True)
    for skipped in result.skipped:
        click.echo(f"  skipped {skipped} (caught up on a later tick)")


def _check_live_options(paper_trading: bool, fresh: bool, confirm: bool, feed_kind: str,
                        data_paths: tuple[str, ...]) -> None:
    if not paper_trading:
        fail("pass --paper-trading: live trading is not implemented, this bot only paper-trades")
    if fresh and not confirm:
        fail("--fresh resets the account to the initial balance and drops its open positions (recorded as a "
             "reset in the same ledger, whose history stays readable); add --confirm to do that")
    if data_paths and feed_kind != "replay":
        fail("--data only applies to --feed replay")
    if feed_kind == "replay" and _given("exchange_id"):
        fail("--exchange only applies to --feed exchange (a replay bot trades recorded candles)")


def _live_feed(feed_kind: str, data: dict[str, str], spec: Any) -> Any:
    """The bot's market data for every pair it trades, checked before anything is created: one line and a
    non-zero exit without it."""
    from chalicelib.db.types import utcnow
    from chalicelib.trading.feeds import CcxtFeed, FeedError, ReplayFeed

    if feed_kind == "replay":
        try:
            replay = ReplayFeed.several(spec.symbols, spec.timeframe, data=data)
            for symbol in spec.symbols:
                if not replay.reveal_next(symbol, spec.timeframe, None, 1):
                    fail(f"no {symbol} candles in {data.get(symbol) or 'the bundled data'}")
        except FeedError as exc:
            fail(str(exc))
        return replay
    exchange_feed = CcxtFeed(spec.exchange)
    try:
        for symbol in spec.symbols:
            exchange_feed.fetch_closed_candles(symbol, spec.timeframe, None, 1, utcnow())
    except FeedError as exc:
        fail(str(exc), EXIT_REFUSED)
    return exchange_feed


@main.command("live", context_settings=AMOUNT_ARG)
@click.argument("strategy")
@click.option("--symbol", "symbols", multiple=True, required=True,
              help="Market, e.g. BTCUSDT or BTC/USDT; repeat it (or write BTCUSDT,ETHUSDT) to trade several pairs "
                   "from one wallet.")
@click.option("--paper-trading", is_flag=True, help="Trade on paper (required: live trading is not implemented).")
@click.option("--timeframe", default="1h", show_default=True)
@click.option("--initial-balance", default="1000", show_default=True, help="Capital of a new account.")
@click.option("--exchange", "exchange_id", default="binance", show_default=True,
              help="ccxt exchange id for --feed exchange (binance, binanceus, kraken, coinbase, …).")
@click.option("--feed", "feed_kind", type=click.Choice(["exchange", "replay"]), default="exchange",
              show_default=True,
              help="exchange: live prices through ccxt on the clock; replay: recorded candles, one per tick.")
@click.option("--data", "data_paths", multiple=True,
              help="SYMBOL=FILE: a CSV of candles for --feed replay (repeatable; default: the bundled candles of "
                   "each symbol); a one-pair bot may give just FILE.")
@click.option("--ticks", type=click.IntRange(min=1), default=None, help="Stop after this many ticks.")
@click.option("--fresh", is_flag=True, help="Reset the account to the initial balance (a reset row; history kept).")
@click.option("--confirm", is_flag=True, help="Confirm --fresh.")
@click.option("--max-candles-per-tick", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Print every candle with the strategy's reason, and info logs.")
@strategy_path_option
@domain_errors
def live(strategy: str, symbols: tuple[str, ...], paper_trading: bool, timeframe: str, initial_balance: str,
         exchange_id: str, feed_kind: str, data_paths: tuple[str, ...], ticks: int | None, fresh: bool,
         confirm: bool, max_candles_per_tick: int, verbose: bool) -> None:
    """Paper-trade STRATEGY on SYMBOL (or several, from one wallet): recover the session (balance, open
    positions), then tick.

    Without DATABASE_URL the session lives in ./atb.sqlite3 (created on first run). Ctrl-C finishes the current
    tick, then exits; run the same command again to carry on where it stopped.
    """
    import logging
    import signal
    import threading

    _check_live_options(paper_trading, fresh, confirm, feed_kind, data_paths)
    spec = _bot_arg(strategy, _symbols_arg(symbols), timeframe, exchange_id if feed_kind == "exchange" else "replay")
    data = _data_arg(data_paths, spec.symbols)
    capital = amount_arg(initial_balance, "initial balance")
    if capital < 0:
        fail("initial balance must not be negative")

    from chalicelib import settings
    from chalicelib.bot.observability import use_plain_logs
    from chalicelib.bot.runner import LiveTradingEngine, SchemaNotReady, prepare_database
    from chalicelib.bot.sessions import SessionError
    from chalicelib.bot.tick import TickSettings
    from chalicelib.db.engine import get_engine

    use_plain_logs(logging.INFO if verbose else logging.WARNING)
    # Market data first: with no data (no network, wrong file) nothing is created or changed.
    feed = _live_feed(feed_kind, data, spec)
    click.echo(f"Feed: {feed.describe()}")

    engine = get_engine()
    try:
        created = prepare_database(engine)
        if created:
            click.echo(created)
        bot = LiveTradingEngine(
            spec.strategy, feed, initial_balance=capital, symbol=spec.symbol, timeframe=spec.timeframe,
            exchange=spec.exchange, fresh=fresh, engine=engine,
            settings=TickSettings.from_settings(settings.get(), max_candles_per_tick=max_candles_per_tick),
            actor=_actor(),
        )
        opening = bot.start()
    except (SchemaNotReady, SessionError) as exc:
        fail(str(exc), EXIT_REFUSED)
    for line in opening.lines():
        click.echo(line)
    note = _existing_account_note(opening)
    if note:
        click.echo(note)

    stop = threading.Event()

    def on_interrupt(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nStopping after the current tick (Ctrl-C again to abort it; nothing half-done is kept)…",
                   err=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    done = 0
    try:
        for result in bot.results(ticks, stop):
            done += 1
            _print_tick(result, verbose, several=len(spec.symbols) > 1)
    except KeyboardInterrupt:
        click.echo("Aborted: the tick in progress was rolled back.", err=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_session_end(bot.session_id, done)


def _print_session_end(session_id: int, ticks: int) -> None:
    from chalicelib.db.models import TradingSession
    from chalicelib.db.uow import read_transaction
    from chalicelib.ledger import open_positions

    with read_transaction() as dbs:
        session = dbs.get(TradingSession, session_id)
        assert session is not None
        held = open_positions(dbs, session_id)
        marks = dict(session.marks)
    cursor = _minute(session.candle_cursor)
    pairs = session.symbols
    if len(pairs) > 1:  # each pair's own newest candle: a pair that was skipped is behind the others
        cursor += " (" + ", ".join(f"{p} {_minute(marks[p].cursor) if p in marks else 'none'}" for p in pairs) + ")"
    click.echo(f"Stopped after {ticks} tick(s): session #{session_id} balance {format_usd(session.total_balance)} "
               f"(available {format_usd(session.available_balance)}), {len(held)} open position(s), "
               f"last candle {cursor}")


def _minute(when: Any) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ") if when else "none"


def _date_arg(value: str | None, option: str) -> Any:
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        fail(f"{option} {value!r}: expected a date like 2024-01-31")


@main.command("backtest", context_settings=AMOUNT_ARG)
@click.argument("strategy")
@click.option("--symbol", "symbols", multiple=True, default=("BTCUSDT",), show_default=True,
              help="Market; repeat it (or write BTCUSDT,ETHUSDT) to trade several pairs from one wallet.")
@click.option("--timeframe", default="1h", show_default=True)
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Test on the last N days of the data (30 unless --from/--to is given).")
@click.option("--from", "date_from", default=None, help="First day to test, YYYY-MM-DD (UTC).")
@click.option("--to", "date_to", default=None, help="Last day to test, YYYY-MM-DD (UTC, included).")
@click.option("--initial-balance", default="1000", show_default=True)
@click.option("--data", "data_paths", multiple=True,
              help="SYMBOL=FILE: a CSV of candles (repeatable; default: the bundled candles of each symbol); one "
                   "pair may give just FILE.")
@click.option("--param", "params", multiple=True, help="NAME=VALUE: a strategy parameter (repeatable).")
@click.option("--output", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Write trades (CSV, JSON), ledger, report.json and report.html per strategy into this directory.")
@strategy_path_option
@domain_errors
def backtest(strategy: str, symbols: tuple[str, ...], timeframe: str, days: int | None, date_from: str | None,
             date_to: str | None, initial_balance: str, data_paths: tuple[str, ...], params: tuple[str, ...],
             output: str | None) -> None:
    """Run STRATEGY (or several: a,b,c, on the same candles) through the real engine over recorded candles, in a
    throwaway database; print a summary and the statistics beside buy and hold — of the pair, or of an equal-weight
    basket when one wallet trades several pairs (docs/lab.md)."""
    import logging
    from datetime import timedelta
    from pathlib import Path

    from chalicelib.bot.backtest import BacktestError, run_backtest
    from chalicelib.bot.observability import use_plain_logs
    from chalicelib.trading.feeds import FeedError
    from chalicelib.trading.strategies import StrategyLoadError, strategy_entry
    from lab.params import ParamError, parse_values
    from lab.report import analyse, headline_table, write_run, write_summary

    names = [n.strip() for n in strategy.split(",")]
    if not all(names) or len(set(names)) != len(names):
        fail(f"STRATEGY {strategy!r}: give one name or several separated by commas, each once")
    specs = [_bot_arg(name, _symbols_arg(symbols), timeframe, "replay") for name in names]
    data = _data_arg(data_paths, specs[0].symbols)
    try:
        values = [parse_values(strategy_entry(name), params) for name in names]
    except ParamError as exc:
        fail(str(exc))
    capital = amount_arg(initial_balance, "initial balance")
    if capital <= 0:
        fail("initial balance must be greater than zero")
    start, end = _date_arg(date_from, "--from"), _date_arg(date_to, "--to")
    if end is not None:
        end += timedelta(days=1)
    if start is not None and end is not None and end <= start:
        fail("--to must not be before --from")
    use_plain_logs(logging.ERROR)
    reports = []
    for spec, chosen in zip(specs, values, strict=True):
        bar: Any = None

        def progress(done: int, total: int, label: str = f"Backtesting {spec.strategy}") -> None:
            nonlocal bar
            if bar is None:
                bar = click.progressbar(length=total, label=label, file=sys.stderr)
                bar.__enter__()
            bar.update(done - bar.pos)

        try:
            summary = run_backtest(spec.strategy, spec.symbol, spec.timeframe, days=days, start=start, end=end,
                                   initial_balance=capital, data=data, params=chosen, progress=progress)
        except (BacktestError, FeedError, StrategyLoadError) as exc:
            fail(str(exc))
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        s = summary
        _print_backtest(s)
        if not s.verified:
            sys.exit(EXIT_REFUSED)
        reports.append(analyse(summary))
    click.echo("")
    click.echo(headline_table(reports))
    if output is not None:
        out_dir = Path(output)
        for report in reports:
            write_run(report, out_dir / report.run.strategy)
        write_summary(reports, out_dir)
        click.echo(f"\nReports in {out_dir}/: " + ", ".join(f"{r.run.strategy}/report.html" for r in reports))


def _print_backtest(s: Any) -> None:
    """One backtest's summary: the wallet, and with several pairs each pair's closed trades beside the basket."""
    from chalicelib.trading.candles import format_time

    several = len(s.symbols) > 1
    counted = f"{s.candle_times} hours × {len(s.symbols)} pairs = {s.candles} candles" if several else (
        f"{s.candles} candles")
    click.echo(f"{s.strategy} on {s.symbol} {s.timeframe}: {counted}, {format_time(s.first_candle)} → "
               f"{format_time(s.last_candle)}")
    click.echo(f"  data             {s.data}")
    click.echo(f"  initial balance  {format_usd(s.initial_balance)}")
    click.echo(f"  final balance    {format_usd(s.final_balance)}   equity {format_usd(s.final_equity)}")
    if s.basket is not None:
        click.echo(f"  return           {s.return_pct:+.2f}%   (equal-weight basket {s.buy_and_hold_pct:+.2f}%: "
                   f"{format_usd(quantize_money(s.basket.final_value))} after {format_usd(s.basket.fees)} fees)")
    else:
        click.echo(f"  return           {s.return_pct:+.2f}%   (buy and hold {s.buy_and_hold_pct:+.2f}%)")
    click.echo(f"  max drawdown     {s.max_drawdown_pct:.2f}%")
    click.echo(f"  trades           {s.trades} ({s.winning_trades} winning)")
    click.echo(f"  fees             {format_usd(s.fees)}")
    click.echo(f"  ledger verified  {'ok' if s.verified else 'FAILED'}")
    if not several:
        return
    rows = [(p.symbol, format_usd(p.realized_pnl), format_usd(p.fees), format_usd(p.net), str(p.trades),
             "—" if p.win_rate_pct is None else f"{p.win_rate_pct:.1f}%", f"{p.buy_and_hold_pct:+.2f}%")
            for p in s.pairs]
    wallet = s.pairs
    trades = sum(p.trades for p in wallet)
    wins = sum(p.winning_trades for p in wallet)
    rows.append(("wallet", format_usd(sum((p.realized_pnl for p in wallet), Decimal(0))),
                 format_usd(sum((p.fees for p in wallet), Decimal(0))),
                 format_usd(sum((p.net for p in wallet), Decimal(0))), str(trades),
                 "—" if not trades else f"{Decimal(wins) / trades * 100:.1f}%", f"{s.buy_and_hold_pct:+.2f}%"))
    head = ("pair", "realised P&L", "fees", "net", "trades", "win rate", "buy and hold")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    click.echo("  closed trades by pair (buy and hold: the pair alone, no fees; the wallet's: the basket):")
    for row in (head, *rows):
        click.echo("    " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                                      enumerate(zip(row, widths, strict=True))))


@main.command("check")
@click.argument("strategy")
@click.option("--symbol", "symbols", multiple=True, default=("BTCUSDT",), show_default=True,
              help="One market: the check tests one pair at a time.")
@click.option("--timeframe", default="1h", show_default=True)
@click.option("--days", type=click.IntRange(min=2), default=60, show_default=True,
              help="Check over the last N days of the data.")
@click.option("--cuts", type=click.IntRange(min=1, max=500), default=20, show_default=True,
              help="Cut points of the look-ahead check.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="CSV of candles (default: the bundled candles of the symbol).")
@click.option("--param", "params", multiple=True, help="NAME=VALUE: a strategy parameter (repeatable).")
@strategy_path_option
@domain_errors
def check_command(strategy: str, symbols: tuple[str, ...], timeframe: str, days: int, cuts: int,
                  data_path: str | None, params: tuple[str, ...]) -> None:
    """Check STRATEGY for look-ahead (decisions and fills up to a candle never change with what follows it) and
    for a sufficient warm-up; exit 1 naming the first offending candle (docs/lab.md)."""
    import logging
    from pathlib import Path

    from chalicelib.bot.backtest import BacktestError
    from chalicelib.bot.observability import use_plain_logs
    from chalicelib.trading.feeds import FeedError, ReplayFeed
    from chalicelib.trading.strategies import StrategyLoadError, strategy_entry
    from lab.check import check
    from lab.params import ParamError, parse_values

    spec = _one_pair(strategy, symbols, timeframe, "atb check")
    try:
        values = parse_values(strategy_entry(spec.strategy), params)
        candles = ReplayFeed(Path(data_path) if data_path else None, symbol=spec.symbol,
                             timeframe=spec.timeframe).all_candles(spec.symbol, spec.timeframe)
    except (ParamError, FeedError) as exc:
        fail(str(exc))
    use_plain_logs(logging.ERROR)
    try:
        report = check(spec.strategy, symbol=spec.symbol, timeframe=spec.timeframe, candles=candles, days=days,
                       cuts=cuts, params=values, progress=lambda text: click.echo(f"  {text}", err=True))
    except (BacktestError, StrategyLoadError) as exc:
        fail(str(exc))
    click.echo(f"{report.strategy}: {report.candles} candles, {report.cut_points} cut points, "
               f"{report.warmup_samples} warm-up samples")
    failed = {f.check for f in report.findings}
    for name in ("look-ahead", "warm-up"):
        if name not in failed:
            click.echo(f"{name}: pass")
    for finding in report.findings:
        click.echo(finding.line())
    if not report.passed:
        sys.exit(EXIT_REFUSED)


@main.command("optimize", context_settings=AMOUNT_ARG)
@click.argument("strategy")
@click.option("--param", "ranges", multiple=True, required=True,
              help="NAME=LOW:HIGH to search (repeatable); NAME=VALUE fixes a parameter.")
@click.option("--metric", type=click.Choice(["sharpe", "sortino", "calmar", "return", "cagr", "profit_factor", "sqn",
                                             "expectancy"]), default="sharpe", show_default=True)
@click.option("--trials", type=click.IntRange(min=1, max=100_000), default=100, show_default=True,
              help="Total trials of the study (a resumed study counts the ones it has).")
@click.option("--symbol", "symbols", multiple=True, default=("BTCUSDT",), show_default=True,
              help="One market: the search runs on one pair.")
@click.option("--timeframe", default="1h", show_default=True)
@click.option("--from", "date_from", default=None, help="First day of the data to use, YYYY-MM-DD (UTC).")
@click.option("--to", "date_to", default=None, help="Last day of the data to use, YYYY-MM-DD (UTC, included).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="CSV of candles (default: the bundled candles of the symbol).")
@click.option("--train-fraction", type=float, default=0.7, show_default=True,
              help="Share of the candles the search sees; the rest is held out.")
@click.option("--folds", type=click.IntRange(min=1, max=20), default=3, show_default=True,
              help="Walk-forward folds of the held-out part.")
@click.option("--jobs", type=click.IntRange(min=1, max=64), default=2, show_default=True,
              help="Worker processes (2: both cores of a small machine).")
@click.option("--storage", type=click.Path(dir_okay=False, path_type=str), default="atb-optimize.sqlite3",
              show_default=True, help="SQLite file of the optuna study: run the same command again to resume.")
@click.option("--seed", type=int, default=None, help="Seed of the sampler (reproducible searches).")
@click.option("--initial-balance", default="1000", show_default=True)
@click.option("--output", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Write optimize.json (both sides, each fold, the verdict) into this directory.")
@strategy_path_option
@domain_errors
def optimize(strategy: str, ranges: tuple[str, ...], metric: str, trials: int, symbols: tuple[str, ...],
             timeframe: str,
             date_from: str | None, date_to: str | None, data_path: str | None, train_fraction: float, folds: int,
             jobs: int, storage: str, seed: int | None, initial_balance: str, output: str | None) -> None:
    """Search STRATEGY's parameters on a training window, then show the best on held-out data beside the
    in-sample result, with walk-forward folds and a plain verdict (docs/lab.md). Needs the `lab` extra."""
    import logging
    from datetime import timedelta
    from pathlib import Path

    from chalicelib.bot.observability import use_plain_logs
    from chalicelib.trading.feeds import FeedError, ReplayFeed
    from chalicelib.trading.strategies import strategy_entry

    try:
        import optuna  # noqa: F401 - only to say plainly what is missing
    except ImportError:
        fail("atb optimize needs optuna: pip install -e '.[lab]'")
    from lab.optimize import OptimizeError, Plan, report_table, run, split, study_name
    from lab.params import ParamError, parse_ranges, parse_values

    spec = _one_pair(strategy, symbols, timeframe, "atb optimize")
    entry = strategy_entry(spec.strategy)
    try:
        searched = parse_ranges(entry, [r for r in ranges if ":" in r.partition("=")[2]])
        fixed = parse_values(entry, [r for r in ranges if ":" not in r.partition("=")[2]])
    except ParamError as exc:
        fail(str(exc))
    if not searched:
        fail("give at least one --param NAME=LOW:HIGH to search")
    capital = amount_arg(initial_balance, "initial balance")
    if capital <= 0:
        fail("initial balance must be greater than zero")
    start, end = _date_arg(date_from, "--from"), _date_arg(date_to, "--to")
    try:
        recorded = ReplayFeed(Path(data_path) if data_path else None, symbol=spec.symbol,
                              timeframe=spec.timeframe).all_candles(spec.symbol, spec.timeframe)
    except FeedError as exc:
        fail(str(exc))
    candles = [c for c in recorded if (start is None or c.open_time >= start)
               and (end is None or c.open_time < end + timedelta(days=1))]
    try:
        cut, fold_bounds = split(candles, train_fraction, folds)
    except OptimizeError as exc:
        fail(str(exc))
    storage_path = Path(storage).resolve()
    name = study_name(spec.strategy, spec.symbol, spec.timeframe, searched, fixed, metric, candles[0].open_time,
                      candles[cut].open_time)
    from chalicelib.trading.strategies import strategy_paths

    plan = Plan(strategy=spec.strategy, symbol=spec.symbol, timeframe=spec.timeframe, data=data_path,
                ranges=tuple(searched), fixed=tuple(fixed.items()), metric=metric, trials=trials,
                train_start=candles[0].open_time, train_end=candles[cut].open_time,
                storage=f"sqlite:///{storage_path}", study_name=name,
                strategy_paths=tuple(str(p) for p in strategy_paths()), initial_balance=capital, seed=seed)
    use_plain_logs(logging.ERROR)
    click.echo(f"Searching {spec.strategy} on {spec.symbol} {spec.timeframe}: {trials} trials, {jobs} worker(s), "
               f"maximising {metric} on {cut} training candles ({candles[0].open_time:%Y-%m-%d} → "
               f"{candles[cut - 1].open_time:%Y-%m-%d}); {len(candles) - cut} held out in {folds} fold(s). "
               f"Study {name} in {storage_path}")
    try:
        outcome = run(plan, jobs=jobs, candles=candles, cut=cut, folds=fold_bounds)
    except OptimizeError as exc:
        fail(str(exc), EXIT_REFUSED)
    click.echo(f"\nBest of {outcome.trials_done} trials: "
               + ", ".join(f"{k}={v}" for k, v in outcome.best_params.items()))
    click.echo(report_table(outcome, metric))
    click.echo(outcome.verdict)
    if output is not None:
        from chalicelib.jsonutil import dumps
        from lab.optimize import outcome_dict

        out_dir = Path(output)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "optimize.json").write_text(dumps(outcome_dict(outcome, metric), indent=2), encoding="utf-8")
        click.echo(f"Report in {out_dir / 'optimize.json'}")


@main.command("switch-strategy")
@click.argument("strategy")
@session_option
@domain_errors
def switch_strategy_command(strategy: str, session_id: int | None) -> None:
    """Trade the account with STRATEGY from now on: the same account keeps its balance, open positions, cursor,
    units and peak, and its ledger records the switch. Running either strategy's `atb live` later continues it."""
    import logging

    from chalicelib.balances import select_session
    from chalicelib.bot.observability import use_plain_logs
    from chalicelib.bot.sessions import SessionError, switch_strategy
    from chalicelib.db.engine import get_engine
    from chalicelib.db.uow import read_transaction

    _strategy_arg(strategy)
    use_plain_logs(logging.WARNING)  # the report below is the output: no JSON log lines on stdout
    with read_transaction() as dbs:
        target = select_session(dbs, session_id)
    try:
        opening = switch_strategy(get_engine(), target.id, strategy, actor=_actor())
    except SessionError as exc:
        fail(str(exc), EXIT_REFUSED)
    click.echo(f"Session #{opening.session_id} switched from {target.strategy} to {strategy}: the same account, "
               "recorded in its ledger")
    for line in opening.lines()[2:]:
        click.echo(line)


def _actor() -> Any:
    from chalicelib.ledger import Actor

    return Actor(operator_name())


# --- bots and deposit schedules kept in the database (issue 14) -------------------------------------------------


@main.group()
def bots() -> None:
    """Bots the scheduled dispatcher ticks (kept in the database; ATB_BOTS seeds them on first deploy)."""


def _bot_line(b: BotOut) -> str:
    account = f"session #{b.session_id}" if b.session_id else "no account yet (opened by its first tick)"
    return (f"#{b.bot_id} {b.strategy} {b.symbol} {b.timeframe} {b.exchange} {b.status}, "
            f"capital {format_usd(b.initial_capital)}, {account}")


@bots.command("add", context_settings=AMOUNT_ARG)
@click.argument("strategy")
@click.option("--symbol", "symbols", multiple=True, required=True,
              help="Market; repeat it (or write BTCUSDT,ETHUSDT) for one wallet trading several pairs.")
@click.option("--timeframe", default="1h", show_default=True)
@click.option("--exchange", default="binance", show_default=True)
@click.option("--initial-capital", default="1000", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def bots_add(strategy: str, symbols: tuple[str, ...], timeframe: str, exchange: str, initial_capital: str,
             as_json: bool) -> None:
    """Add a bot; the next scheduled tick opens its account and trades it."""
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine

    amount = amount_arg(initial_capital, "initial capital")
    spec = _bot_arg(strategy, _symbols_arg(symbols), timeframe, exchange)
    view = fleet.add_bot(spec, amount, actor=_actor(), engine=get_engine())
    print_json(view.body()) if as_json else click.echo(f"Added bot {_bot_line(view)}")


@bots.command("list")
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def bots_list(as_json: bool) -> None:
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine

    rows = fleet.list_bots(get_engine())
    if as_json:
        print_json([r.body() for r in rows])
        return
    for row in rows:
        click.echo(_bot_line(row))
    if not rows:
        click.echo("No bots: add one with `atb bots add STRATEGY --symbol BTCUSDT`")


def _bot_status(bot_id: int, status: BotStatus, verb: str) -> None:
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine

    click.echo(f"{verb} bot {_bot_line(fleet.set_bot_status(bot_id, status, engine=get_engine()))}")


@bots.command("pause")
@click.argument("bot_id", type=click.IntRange(1, MAX_INT_ID))
@domain_errors
def bots_pause(bot_id: int) -> None:
    """Stop ticking a bot; its account stays as it is."""
    _bot_status(bot_id, "paused", "Paused")


@bots.command("resume")
@click.argument("bot_id", type=click.IntRange(1, MAX_INT_ID))
@domain_errors
def bots_resume(bot_id: int) -> None:
    _bot_status(bot_id, "active", "Resumed")


@bots.command("remove")
@click.argument("bot_id", type=click.IntRange(1, MAX_INT_ID))
@domain_errors
def bots_remove(bot_id: int) -> None:
    """Delete a bot's definition; its account, ledger and trades stay readable."""
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine

    click.echo(f"Removed bot {_bot_line(fleet.remove_bot(bot_id, engine=get_engine()))}")


@main.group()
def schedules() -> None:
    """Deposits repeated every period (each period applied once, attributed to you)."""


@schedules.command("add", context_settings=AMOUNT_ARG)
@click.option("--amount", required=True)
@click.option("--every", required=True, help="1h, 1d, 1w, 2w …")
@click.option("--reason", required=False, help="Why (required).")
@session_option
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def schedules_add(amount: str, every: str, reason: str | None, session_id: int | None, as_json: bool) -> None:
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine

    value = amount_arg(amount)
    view = fleet.add_schedule(value, every, reason_arg(reason), actor=_actor(), session_id=session_id,
                              engine=get_engine())
    if as_json:
        print_json(view.body())
    else:
        click.echo(f"Schedule #{view.schedule_id}: deposit {format_usd(view.amount)} every {view.every} "
                   f"into session #{view.session_id}, first at {view.next_deposit_at:%Y-%m-%d %H:%M} UTC")


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True)
@domain_errors
def schedules_list(as_json: bool) -> None:
    from chalicelib import fleet
    from chalicelib.db.engine import get_engine

    rows = fleet.list_schedules(get_engine())
    if as_json:
        print_json([r.body() for r in rows])
        return
    for r in rows:
        click.echo(f"#{r.schedule_id} {format_usd(r.amount)} every {r.every} into session #{r.session_id} "
                   f"({r.status}), next {r.next_deposit_at:%Y-%m-%d %H:%M} UTC: {r.reason}")
    if not rows:
        click.echo("No deposit schedules")


# --- atb report: performance attribution (issue 13) --------------------------------------------------------------


@main.command("report")
@session_option
@click.option("--by", "by", default="strategy", show_default=True,
              help="Group by the strategy that opened each trade, or by symbol (strategy|symbol).")
@click.option("--from", "date_from", default=None, help="Trades closed from this market time, YYYY-MM-DD (UTC, "
                                                        "included; an ISO time works too).")
@click.option("--to", "date_to", default=None, help="Trades closed before this market time, YYYY-MM-DD (UTC, "
                                                    "excluded).")
@click.option("--json", "as_json", is_flag=True, help="Print what GET /api/performance answers.")
@domain_errors
def report(session_id: int | None, by: str, date_from: str | None, date_to: str | None, as_json: bool) -> None:
    """Realised P&L, fees, win rate, average win/loss and time-weighted contribution by strategy or symbol."""
    from chalicelib import performance
    from chalicelib.api.schemas import PerformanceResponse
    from chalicelib.db.engine import get_engine

    try:
        grouping = performance.parse_by(by)
        start, end = performance.window(date_from, date_to)
    except performance.ReportError as exc:
        fail(f"--{exc}")
    result = performance.read_report(session_id, grouping, start, end, engine=get_engine())
    if as_json:
        print_json(PerformanceResponse.of(result).body())
        return
    since = f"from {start:%Y-%m-%d %H:%M} UTC" if start else "since the start"
    span = f"{since} to {end:%Y-%m-%d %H:%M} UTC (excluded)" if end else since
    mean = "n/a" if result.average_equity is None else format_usd(result.average_equity)
    click.echo(f"Session #{result.session_id}: closed trades by {grouping}, {span}; average equity {mean}")
    click.echo(f"  {grouping:<16} {'trades':>6} {'won':>4} {'win rate':>8} {'realised':>14} {'fees':>12} "
               f"{'net':>14} {'avg win':>12} {'avg loss':>12} {'contrib.':>9}")
    for g in (*result.groups, result.total):
        rate = "n/a" if g.win_rate is None else f"{g.win_rate * 100:.1f}%"
        contribution = "n/a" if g.contribution is None else f"{g.contribution * 100:+.2f}%"
        win = "n/a" if g.average_win is None else format_usd(g.average_win)
        loss = "n/a" if g.average_loss is None else format_usd(g.average_loss)
        versions = f"  versions {', '.join(g.versions)}" if g.versions else ""
        click.echo(f"  {g.key:<16} {g.trades:>6} {g.wins:>4} {rate:>8} {format_usd(g.realized_pnl):>14} "
                   f"{format_usd(g.fees):>12} {format_usd(g.net_pnl):>14} {win:>12} {loss:>12} "
                   f"{contribution:>9}{versions}")


if __name__ == "__main__":  # pragma: no cover
    main()
