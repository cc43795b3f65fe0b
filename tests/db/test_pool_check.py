"""The pool's checkout check (``CheckoutCheck``): no round trip for a connection used a moment
ago, a full check for one idle longer, and a connection the server ended is never handed out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from ragserve.db.pool import Connection, Database


@pytest.fixture
async def one_connection(new_database_url: Callable[[], str]) -> AsyncIterator[Database]:
    """A pool of a single connection, so that every checkout hands out the same one."""
    database = Database(new_database_url(), max_size=1)
    await database.open(migrate=False)
    yield database
    await database.close()


async def last_statement(observer: Connection, pid: int) -> str:
    row = await (
        await observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
    ).fetchone()
    assert row is not None
    return str(row["query"])


async def test_recent_connection_is_handed_out_without_a_statement(
    one_connection: Database,
) -> None:
    db = one_connection
    observer = await db.connect_dedicated()
    async with observer:
        async with db.connection() as conn:
            pid = conn.info.backend_pid
            await conn.execute("SELECT 'marker'")
        async with db.connection() as conn:
            assert conn.info.backend_pid == pid
            # The server saw nothing since the marker: no check query on this checkout.
            assert await last_statement(observer, pid) == "SELECT 'marker'"
        db.checkout_check.idle_s = 0.0  # now every checkout finds it idle for too long
        async with db.connection() as conn:
            assert conn.info.backend_pid == pid
            assert await last_statement(observer, pid) == ""  # psycopg_pool's empty query


async def test_connection_ended_by_the_server_is_not_handed_out(one_connection: Database) -> None:
    """The backend of a pooled connection, used a moment ago, is terminated (as in a restart
    or failover): the next request gets a new connection and succeeds."""
    db = one_connection
    async with db.connection() as conn:
        pid = conn.info.backend_pid
        await conn.execute("SELECT 1")
    observer = await db.connect_dedicated()
    async with observer:
        # Waits (up to 5 s) until the backend is gone.
        await observer.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
    assert row is not None and row["pid"] != pid
    assert db.checkout_check.idle_s > 1  # it was recent: only its socket could tell
