"""The CLI never answers a user's mistake with a traceback: every wrong DATABASE_URL, unreachable server, unknown
database or role, unwritable SQLite path and unmigrated database gives exactly one ``error:`` line on stderr, a
non-zero exit (2 for configuration, 1 for an unreachable service) and creates nothing — no SQLite file, no
database, no table. ``--debug`` shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import atb_testing
import pytest

from chalicelib.db.engine import dispose_engines, get_engine

COMMANDS = [
    ["balance", "show"],
    ["balance", "deposit", "5", "--reason", "x"],
    ["sessions", "list"],
    ["sessions", "start", "ma_crossover", "--symbol", "BTCUSDT"],
    ["db", "verify"],
    ["db", "status"],
    ["db", "migrate"],
]

#: name, DATABASE_URL (``{tmp}``, ``{pg}`` and ``{closed}`` filled in), exit code, words the line must hold
URL_CASES = [
    ("postgres scheme", "postgres://owner:hunter2secret@127.0.0.1:5432/atb", 2, "postgresql+pg8000://"),
    ("postgresql without a driver", "postgresql://owner:hunter2secret@127.0.0.1:5432/atb", 2, "postgresql+pg8000"),
    ("misspelt driver", "postgresql+pg800://owner:hunter2secret@127.0.0.1:5432/atb", 2, "pg8000"),
    ("another driver", "postgresql+psycopg2://owner:hunter2secret@127.0.0.1:5432/atb", 2, "pg8000"),
    ("another database", "mysql://owner:hunter2secret@127.0.0.1/atb", 2, "unsupported"),
    ("not a URL", "hunter2secret at localhost", 2, "not a database URL"),
    ("closed port", "postgresql+pg8000://postgres:hunter2secret@127.0.0.1:{closed}/postgres", 1, "reach"),
    ("unknown database", "{pg}/atb_no_such_database_{unique}", 2, "does not exist"),
    ("unknown role", "postgresql+pg8000://no_such_role_{unique}:hunter2secret@127.0.0.1:5432/postgres", 2,
     "role"),
    ("SQLite in a missing directory", "sqlite:///{tmp}/no/such/dir/atb.sqlite3", 2, "sqlite"),
    ("SQLite where nothing can be written", "sqlite:////proc/atb-cannot-write/atb.sqlite3", 2, "sqlite"),
]


def _atb(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "ATB_"))}
    return {**env, "DATABASE_URL": url, "DATABASE_CONNECT_TIMEOUT": "5"}


def _pg_base(admin_url: str) -> str:
    return admin_url.rsplit("/", 1)[0]


def _database_exists(admin_url: str, name: str) -> bool:
    conn = atb_testing.admin_connection(admin_url)
    try:
        return bool(conn.run("SELECT 1 FROM pg_database WHERE datname = :n", n=name))
    finally:
        conn.close()


@pytest.mark.parametrize(("url", "code", "words"), [c[1:] for c in URL_CASES], ids=[c[0] for c in URL_CASES])
def test_each_wrong_database_url_prints_one_error_line_exits_non_zero_and_creates_nothing(
        tmp_path: Path, postgres_admin_url: str, url: str, code: int, words: str) -> None:
    unique = atb_testing.unique_name("x")
    url = url.format(tmp=tmp_path, pg=_pg_base(postgres_admin_url), closed=atb_testing.free_port(), unique=unique)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    for args in COMMANDS:
        result = _atb(args, _env(url), workdir)
        assert "hunter2secret" not in result.stderr + result.stdout
        if args == ["db", "status"] and url.startswith("sqlite"):  # no file yet: says so on stdout, exit 1
            assert result.returncode == 1 and "run `atb db migrate`" in result.stdout and not result.stderr
            continue
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr[-2000:])
        assert result.returncode == code, (args, result.returncode, lines)
        assert words.lower() in lines[0].lower(), (args, lines)
        assert list(workdir.iterdir()) == [] and not (tmp_path / "no").exists()
    if "atb_no_such_database" in url:
        assert not _database_exists(postgres_admin_url, f"atb_no_such_database_{unique}")


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
def test_every_command_but_migrate_on_an_unmigrated_database_says_run_atb_db_migrate_and_creates_nothing(
        tmp_path: Path, postgres_admin_url: str, db_kind: str) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    name = atb_testing.unique_name("atb_unmigrated")
    if db_kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    else:
        url = atb_testing.create_database(postgres_admin_url, name)
    try:
        for args in COMMANDS:
            if args[:2] == ["db", "migrate"]:
                continue
            result = _atb(args, _env(url), workdir)
            if args == ["db", "status"]:  # its job is to say so: exit 1, on stdout
                assert result.returncode == 1 and "run `atb db migrate`" in result.stdout and not result.stderr
                continue
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and "run `atb db migrate`" in lines[0], (args, result.stderr[-2000:])
            assert result.returncode == 2, (args, lines)
        assert list(workdir.iterdir()) == []
        if db_kind == "sqlite":
            assert not (tmp_path / "fresh.sqlite3").exists()  # no empty file left behind
        else:
            with get_engine(url).connect() as conn:
                tables = conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                assert tables.scalar() == 0
    finally:
        dispose_engines()
        if db_kind == "postgres":
            atb_testing.drop_database(postgres_admin_url, name)


def test_a_read_command_in_a_fresh_directory_leaves_no_atb_sqlite3_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "ATB_"))}
    for args in (["balance", "show"], ["sessions", "list"], ["balance", "history"], ["db", "status"]):
        result = _atb(args, env, tmp_path)
        assert result.returncode in (1, 2) and "Traceback" not in result.stderr
        assert list(tmp_path.iterdir()) == [], args


def test_debug_shows_the_traceback_that_is_otherwise_one_line(tmp_path: Path) -> None:
    url = f"postgresql+pg8000://postgres@127.0.0.1:{atb_testing.free_port()}/postgres"
    plain = _atb(["sessions", "list"], _env(url), tmp_path)
    assert plain.returncode == 1 and len(plain.stderr.splitlines()) == 1
    debug = _atb(["--debug", "sessions", "list"], _env(url), tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    by_env = _atb(["sessions", "list"], {**_env(url), "ATB_DEBUG": "1"}, tmp_path)
    assert "Traceback" in by_env.stderr


HOSTILE_ARGS = [
    ["balance", "deposit", "1e1000000", "--reason", "x"],
    ["balance", "deposit", "1e-99999999999999999999", "--reason", "x"],
    ["balance", "set", "10000000000000000000000000.000000001", "--reason", "x"],
    ["balance", "set", "100000000000000000000000000000.000000001", "--reason", "x"],
    ["balance", "withdraw", "-1e1000000", "--reason", "x"],
    ["balance", "deposit", "5", "--reason", "top\u202eup"],
    ["balance", "deposit", "5", "--reason", "x", "--session", "2147483648"],
    ["balance", "show", "--session", "99999999999999999999999"],
    ["balance", "history", "--before", "9223372036854775808"],
    ["sessions", "start", "ma_crossover", "--symbol", "BTCUSDT", "--initial-balance", "1e1000000"],
    ["sessions", "start", "ma_crossover", "--symbol", "BTCUSDT", "--initial-balance", "1e-99999999999999999999"],
]


@pytest.mark.parametrize("args", HOSTILE_ARGS, ids=[" ".join(a)[:60] for a in HOSTILE_ARGS])
def test_numbers_and_ids_of_any_size_are_one_error_line_and_exit_2_and_change_nothing(
        database_url: str, tmp_path: Path, args: list[str]) -> None:
    from click.testing import CliRunner

    from chalicelib.cli import main

    before = CliRunner().invoke(main, ["balance", "history", "--json"]).stdout
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert CliRunner().invoke(main, ["balance", "history", "--json"]).stdout == before


def test_a_migration_that_refuses_says_why_in_one_line_and_exits_1(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chalicelib.cli import main
    from chalicelib.db import migrate

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("session #3: its trade history implies a balance of -5 but open positions hold 10; "
                           "fix the history before migrating")

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'atb.sqlite3'}")
    monkeypatch.setattr(migrate, "upgrade", refuse)
    result = CliRunner().invoke(main, ["db", "migrate"])
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: session #3") and "fix the history" in line
    assert result.exit_code == 1
    dispose_engines()
