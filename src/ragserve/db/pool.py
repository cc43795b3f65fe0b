"""The connection pool: one per process, built by the app factory or CLI and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import math
import select
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ragserve.db.embedded import start_embedded_server
from ragserve.db.migrate import migrate as run_migrations
from ragserve.errors import DatabaseError
from ragserve.logs import redact_url
from ragserve.settings import Settings

Connection = psycopg.AsyncConnection[dict[str, Any]]
RECONNECT_S = 15.0
HNSW_EF_SEARCH = 100  # recall@10 0.94 at p99 10 ms on 100k chunks (bench/retrieval_latency.py)
CHECK_IDLE_S = 5.0
"""A pooled connection idle longer than this gets a full check (a round trip) on checkout;
one used more recently only a look at its socket (see ``CheckoutCheck``)."""


async def _configure(conn: Connection) -> None:
    # autocommit: explicit transactions only (``conn.transaction()``), which pgqueuer requires.
    await conn.set_autocommit(True)
    # The vector type does not exist before the first migration ran.
    with contextlib.suppress(psycopg.ProgrammingError):
        await register_vector_async(conn)
    # Filtered HNSW searches keep scanning until they have enough rows (pgvector >= 0.8), and
    # the candidate list is set once here rather than per search (see KnowledgeStore.search).
    await conn.execute("SET hnsw.iterative_scan = relaxed_order")
    await conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
    # SSD-like random reads: otherwise mid-size collections (5k-10k chunks) are scanned whole
    # instead of searched through their HNSW index (bench/retrieval_latency.py).
    await conn.execute("SET random_page_cost = 1.1")


def connect_timeout(timeout_s: float) -> int:
    """libpq's ``connect_timeout``: whole seconds, and it treats values below 2 as 2."""
    return max(2, math.ceil(timeout_s))


@asynccontextmanager
async def unavailable_as_database_error() -> AsyncIterator[None]:
    """A lost or unreachable server (or no free connection in time) becomes ``DatabaseError``,
    which is retryable and which the API answers with ``503`` + ``Retry-After``."""
    try:
        yield
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise DatabaseError(f"database unavailable: {exc}") from exc


class CheckoutCheck:
    """psycopg_pool's ``check``: is a pooled connection still alive? Usually without a round trip.

    ``AsyncConnectionPool.check_connection`` sends an empty query on every checkout, which
    doubled the round trips of every statement (docs/PERFORMANCE.md). Here:

    - A connection libpq already knows to be broken, or not idle, fails at once.
    - An idle autocommit connection has nothing to read: the server only speaks when asked.
      If its socket is readable, the server sent something unasked, which in practice means
      it went away (the FATAL error and EOF of a restart, a failover, ``pg_terminate_backend``,
      ``idle_session_timeout``) or, harmlessly, a notice or parameter status. Either way the
      full check decides: it reads what is there, and raises if the connection is gone.
    - A connection not handed out for longer than ``idle_s`` (or never yet) gets the full check
      too. That covers what the socket cannot show: a peer that vanished without a word (its
      host down, a partition, its address taken over by another host), which only a packet
      sent reveals. A few seconds keeps that check off the busy path, where a connection comes
      back within milliseconds, while one that sat idle is still checked. The clock starts at
      the checkout, not at the return (psycopg_pool runs a ``reset`` hook, which would see the
      return, in a background task): a long checkout only makes the next check a full one.

    A connection that fails is closed, so that the pool discards it (instead of putting it back,
    as it would one that still looks open) and opens another.
    """

    def __init__(self, idle_s: float = CHECK_IDLE_S) -> None:
        self.idle_s = idle_s
        self._handed_out_at: weakref.WeakKeyDictionary[Connection, float] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, conn: Connection) -> None:
        pgconn = conn.pgconn
        if pgconn.status != ConnStatus.OK or pgconn.transaction_status != TransactionStatus.IDLE:
            await conn.close()
            raise psycopg.OperationalError("the pooled connection is broken or busy")
        now = time.monotonic()
        last = self._handed_out_at.get(conn)
        if last is None or now - last > self.idle_s or _readable(pgconn.socket):
            try:
                await AsyncConnectionPool.check_connection(conn)
            except Exception:
                await conn.close()
                raise
        self._handed_out_at[conn] = now


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class Database:
    """Owns the pool, and in embedded mode the URL of the embedded server.

    ``timeout_s`` bounds every wait for a connection (TCP connect and pool checkout), so that
    a database outage turns into an error within seconds instead of a hang.
    """

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 10,
        timeout_s: float = 3.0,
        check_idle_s: float = CHECK_IDLE_S,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.checkout_check = CheckoutCheck(check_idle_s)
        self.pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={
                "row_factory": dict_row,
                "autocommit": True,
                "connect_timeout": connect_timeout(timeout_s),
            },
            configure=_configure,
            # A pooled connection may have died with the server (restart, failover, network
            # cut): check it on checkout, so that only requests made during an outage fail;
            # without a round trip when it was used a moment ago (CheckoutCheck).
            check=self.checkout_check,
            timeout=timeout_s,
            # A slot's background reconnection backs off 1, 2, 4, 8 s, then gives up; the next
            # request (or readiness probe) starts a fresh one. Longer would let the backoff
            # grow to minutes and delay recovery from a long outage by as much.
            reconnect_timeout=RECONNECT_S,
            open=False,
        )

    @classmethod
    async def from_settings(cls, settings: Settings) -> Database:
        url = settings.database_url.get_secret_value() if settings.database_url else None
        if url is None:
            url = await asyncio.to_thread(start_embedded_server, settings.data_dir)
        return cls(url, max_size=settings.db_pool_size, timeout_s=settings.db_timeout_s)

    async def open(self, *, migrate: bool = True) -> list[str]:
        """Apply pending migrations (unless told not to), then open the pool.

        Migrations run first on a connection of their own, so that every pooled connection
        is configured after the ``vector`` type exists. Returns the migrations applied.
        """
        applied: list[str] = []
        try:
            if migrate:
                conn = await self.connect_dedicated()
                async with conn:
                    applied = await run_migrations(conn)
            await self.pool.open(wait=True, timeout=30)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot use PostgreSQL at {self.safe_url}: {exc}") from exc
        return applied

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return redact_url(self.url)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        async with unavailable_as_database_error(), self.pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with (
            unavailable_as_database_error(),
            self.pool.connection() as conn,
            conn.transaction(),
        ):
            yield conn

    async def connect_dedicated(self) -> Connection:
        """A connection outside the pool, for LISTEN and for pgqueuer's long-lived driver."""
        conn = await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=connect_timeout(self.timeout_s),
        )
        await _configure(conn)
        return conn

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception:
            return False
        return True
