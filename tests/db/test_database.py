"""Migrations and the embedded server, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psycopg

from ragserve.db.migrate import applied_versions, available_migrations, migrate, schema_is_current
from ragserve.db.pool import Database


async def test_migrations_apply_once_even_when_processes_race(
    new_database_url: Callable[[], str],
) -> None:
    url = new_database_url()
    conns = [await Database(url).connect_dedicated() for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [name for result in results for name in result]
        wanted = [f"{m.version:04d}_{m.name}" for m in available_migrations()]
        assert sorted(n for n in applied if n[0].isdigit()) == wanted  # each exactly once
        assert applied.count("pgqueuer install") == 1
        assert await schema_is_current(conns[0])
        assert await migrate(conns[0]) == []  # nothing left to do
        assert await applied_versions(conns[0]) == {m.version for m in available_migrations()}
    finally:
        for conn in conns:
            await conn.close()


async def test_migrations_work_on_a_connection_of_any_row_factory(
    new_database_url: Callable[[], str],
) -> None:
    """Tuple rows (psycopg's default) as well as the pool's dict rows."""
    async with await psycopg.AsyncConnection.connect(new_database_url(), autocommit=True) as conn:
        assert await applied_versions(conn) == set()
        assert not await schema_is_current(conn)
        assert await migrate(conn)
        assert await schema_is_current(conn)


async def test_database_reports_unreachable_server_as_typed_error() -> None:
    from ragserve.errors import DatabaseError

    db = Database("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    try:
        await db.open()
    except DatabaseError as exc:
        assert "127.0.0.1" in str(exc)
    else:  # pragma: no cover - the assertion is the point
        raise AssertionError("open() should fail")


def test_embedded_server_is_shared_and_survives_one_process_exiting(tmp_path: Path) -> None:
    """Processes share the server of one data dir; it outlives any one of them, including one
    killed without cleaning up, and stops when the last live one exits."""
    script = textwrap.dedent(
        """
        import sys, time, psycopg
        from pathlib import Path
        from ragserve.db.embedded import start_embedded_server
        url = start_embedded_server(Path(sys.argv[1]))
        with psycopg.connect(url) as c:
            c.execute("select 1")
        print(url, flush=True)
        if sys.argv[2] == "hold":
            time.sleep(60)
        """
    )

    def run(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), mode], stdout=subprocess.PIPE, text=True
        )

    holder, killed = run("hold"), run("hold")
    url = holder.stdout.readline().strip()  # type: ignore[union-attr]
    assert killed.stdout.readline().strip() == url  # type: ignore[union-attr]
    killed.kill()  # SIGKILL: no chance to take itself off the list of holders
    killed.wait(10)
    short = run("exit")
    assert short.stdout.read().strip() == url  # type: ignore[union-attr]  # same server
    assert short.wait(60) == 0
    with psycopg.connect(url) as conn:  # the holder still has it
        assert conn.execute("select 1").fetchone() == (1,)
    holder.terminate()  # SIGTERM also skips atexit: the holder is left on the list too
    holder.wait(10)
    last = run("exit")  # prunes the dead holders, so it is the last one and stops the server
    assert last.wait(60) == 0
    handles = json.loads((tmp_path / "pgdata" / ".handle_pids.json").read_text() or "[]")
    assert handles == []
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the server should have stopped with its last process")
