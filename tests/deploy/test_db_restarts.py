"""Connections survive what Lambda and RDS do to them: a database restart (reboot, failover, Aurora resume,
an idle session closed by the server) between two ticks costs one reconnect, and a restart in the middle of a
tick leaves nothing half-written; the next tick carries on and the ledger verifies. A private PostgreSQL
cluster (initdb/pg_ctl) is restarted for real, in the same process as the ticks."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import atb_testing
import pytest
from sqlalchemy import Engine, event, func, select

from chalicelib.bot.runner import LiveTradingEngine
from chalicelib.db import engine as engine_module
from chalicelib.db.migrate import upgrade
from chalicelib.db.models import AccountBalance, TickLog, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.trading.feeds import ReplayFeed
from chalicelib.verify import verify

pytestmark = pytest.mark.postgres_only


class RestartableCluster(atb_testing.ThrowawayCluster):
    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every backend is killed, the server comes back on the same port."""
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*run_as, str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                        str(self.dir / "log"), "-m", "fast", "-w", "restart"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RestartableCluster]:
    try:
        server = RestartableCluster()
    except atb_testing.PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def engine(cluster: RestartableCluster) -> Iterator[Engine]:
    admin = f"postgresql+pg8000://{cluster.user}@127.0.0.1:{cluster.port}/postgres"
    url = atb_testing.create_database(admin, atb_testing.unique_name("atb_restart"))
    db = engine_module.get_engine(url)
    upgrade(db)
    yield db
    engine_module.dispose_engines()


def snapshot(engine: Engine, session_id: int) -> dict[str, Any]:
    with read_transaction(engine) as db:
        session = db.get(TradingSession, session_id)
        assert session is not None
        return {
            "cursor": session.candle_cursor,
            "balance": session.total_balance,
            "version": session.version,
            "tick_log": db.scalar(select(func.count()).select_from(TickLog)),
            "ledger": db.scalar(select(func.count()).select_from(AccountBalance)),
        }


def test_ticks_reconnect_by_themselves_after_the_server_restarts_between_them(
    cluster: RestartableCluster, engine: Engine
) -> None:
    bot = LiveTradingEngine("ma_crossover", ReplayFeed(), engine=engine)
    bot.start()
    assert bot.tick().candles_applied == 1
    before = snapshot(engine, bot.session_id)

    cluster.restart()  # the pooled connection is now dead; nobody tells the engine

    result = bot.tick()
    assert result.status == "applied" and result.candles_applied == 1
    after = snapshot(engine, bot.session_id)
    assert after["cursor"] > before["cursor"]
    assert after["tick_log"] == before["tick_log"] + 1

    cluster.restart()
    cluster.restart()
    assert bot.tick().candles_applied == 1
    assert verify(engine).ok


def test_a_restart_in_the_middle_of_a_tick_writes_nothing_and_the_next_tick_carries_on(
    cluster: RestartableCluster, engine: Engine
) -> None:
    bot = LiveTradingEngine("ma_crossover", ReplayFeed(), engine=engine)
    bot.start()
    for _ in range(3):
        bot.tick()
    before = snapshot(engine, bot.session_id)

    seen: list[str] = []

    def restart_after_the_first_write(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.lstrip().split(None, 1)[0].upper())
        writes = [s for s in seen[:-1] if s in ("INSERT", "UPDATE", "DELETE")]
        if writes and not restarted:
            restarted.append(statement)
            cluster.restart()  # kills this very connection mid-transaction, after it wrote

    restarted: list[str] = []
    event.listen(engine, "before_cursor_execute", restart_after_the_first_write)
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises for a dropped connection
            bot.tick()
    finally:
        event.remove(engine, "before_cursor_execute", restart_after_the_first_write)
    assert restarted, f"the tick never got past its first write: {seen}"
    assert "SELECT" in seen[:-1]

    assert snapshot(engine, bot.session_id) == before  # the interrupted tick left nothing behind

    result = bot.tick()  # reconnects and applies the candle the interrupted tick was working on
    assert result.status == "applied" and result.candles_applied == 1
    after = snapshot(engine, bot.session_id)
    assert after["tick_log"] == before["tick_log"] + 1
    assert after["cursor"] > before["cursor"]
    assert verify(engine).ok
