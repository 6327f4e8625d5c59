"""Test support: find or start a real PostgreSQL, and make clean databases from a migrated template."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pg8000.native
from sqlalchemy.engine import URL, make_url

LOCAL_URL = "postgresql+pg8000://postgres@127.0.0.1:5432/postgres"


class PostgresUnavailable(RuntimeError):
    pass


def _can_connect(url: str) -> bool:
    u = make_url(url)
    try:
        conn = pg8000.native.Connection(
            user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
            port=u.port or 5432, database=u.database or "postgres", timeout=3,
        )
    except Exception:
        return False
    conn.close()
    return True


class ThrowawayCluster:
    """A private PostgreSQL cluster made with initdb/pg_ctl, for machines without a running server."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = shutil.which("initdb") or (bins[-1] if bins else None)
        if initdb is None:
            raise PostgresUnavailable(
                "no PostgreSQL found: set TEST_DATABASE_URL, start a server on 127.0.0.1:5432, or install "
                "PostgreSQL (initdb/pg_ctl) so the tests can start a throwaway cluster"
            )
        self.bindir = Path(initdb).parent
        self.dir = Path(tempfile.mkdtemp(prefix="atb-pg-"))
        self.port = 55432 + os.getpid() % 1000
        self.user = "postgres"

    def start(self) -> str:
        data = self.dir / "data"
        run_as = []
        if os.geteuid() == 0:  # initdb refuses root: run it as the postgres user when there is one
            shutil.chown(self.dir, "postgres")
            run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*run_as, str(self.bindir / "initdb"), "-D", str(data), "-U", self.user,
                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run([*run_as, str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"),
                        "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "-w", "start"],
                       check=True, capture_output=True)
        return f"postgresql+pg8000://{self.user}@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        """Run ``pg_ctl`` on this cluster (as the postgres user when we are root), e.g. ``pause``/``resume``."""
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*run_as, str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                        str(self.dir / "log"), *args], check=True, capture_output=True)

    def pause(self) -> None:
        """Stop the server and keep its data: every connection dies and new ones are refused."""
        self.pg_ctl("-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the paused server again, on the same port."""
        self.pg_ctl("-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "-w", "start")

    def stop(self) -> None:
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*run_as, str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast",
                        "stop"], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def find_postgres() -> tuple[str, ThrowawayCluster | None]:
    """An admin URL of a reachable PostgreSQL, and the cluster to stop afterwards if we started one."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        if not _can_connect(explicit):
            raise PostgresUnavailable(f"TEST_DATABASE_URL={explicit} is not reachable")
        return explicit, None
    if _can_connect(LOCAL_URL):
        return LOCAL_URL, None
    cluster = ThrowawayCluster()
    url = cluster.start()
    for _ in range(50):
        if _can_connect(url):
            return url, cluster
        time.sleep(0.1)
    cluster.stop()
    raise PostgresUnavailable("started a throwaway PostgreSQL cluster but cannot connect to it")


def admin_connection(admin_url: str) -> pg8000.native.Connection:
    u = make_url(admin_url)
    return pg8000.native.Connection(user=u.username or "postgres", password=u.password,
                                    host=u.host or "127.0.0.1", port=u.port or 5432,
                                    database=u.database or "postgres")


def database_url(admin_url: str, name: str) -> str:
    u = make_url(admin_url)
    return URL.create(u.drivername, username=u.username, password=u.password, host=u.host, port=u.port,
                      database=name).render_as_string(hide_password=False)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    conn = admin_connection(admin_url)
    try:
        conn.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.run(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        conn.close()
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    conn = admin_connection(admin_url)
    try:
        conn.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def free_port() -> int:
    """A TCP port nobody listens on right now (for a second throwaway cluster in the same process)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The powertools Logger's output as Lambda writes it (JSON lines), whatever stream the logger was created
    with and even if an in-process CLI test switched this process to plain lines."""
    import logging

    from chalicelib import logs

    handler: Any = logs.logger.registered_handler
    formatter, level = handler.formatter, logs.logger.log_level
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    logs.use_json_logs()
    logs.logger.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        handler.setStream(previous)
        handler.setFormatter(formatter)
        logs.logger.setLevel(level)


def json_log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
