"""LISTEN/NOTIFY fan-out: one listening connection per process, many waiters.

SSE streams and ``/v1/ask`` wait on an ``asyncio.Event`` per job instead of each polling the
table; a worker registers a callback for cancellations. A notification only says "look again":
the stored events stay the source of truth, so a missed wake-up costs latency, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

from psycopg import sql

from ragserve.db.pool import Connection, Database

log = logging.getLogger(__name__)

RECONNECT_MAX_S = 5.0


class NotificationHub:
    def __init__(self, db: Database, channels: list[str]) -> None:
        self.db = db
        self.channels = channels
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._callbacks: dict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False

    async def start(self) -> None:
        await self._connect()
        self._connected = True
        self._task = asyncio.create_task(self._pump(), name="ragserve-notify")

    async def _connect(self) -> None:
        self._conn = await self.db.connect_dedicated()
        for channel in self.channels:
            await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    def on(self, channel: str, callback: Callable[[str], None]) -> None:
        self._callbacks[channel].append(callback)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str, key: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``channel`` carries ``key``; clear it after each look."""
        event = asyncio.Event()
        self._waiters[(channel, key)].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters[(channel, key)]
            waiters.discard(event)
            if not waiters:
                del self._waiters[(channel, key)]

    @property
    def healthy(self) -> bool:
        return self._connected and self._task is not None and not self._task.done()

    async def _pump(self) -> None:
        """Deliver notifications; if the connection drops, wake everyone and reconnect."""
        while True:
            try:
                assert self._conn is not None
                async for note in self._conn.notifies():
                    self._deliver(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "notification listener lost its connection",
                    extra={"event": "notify.lost", "error": str(exc)},
                )
            self._connected = False
            # Waiters fall back to reading the table; they may have missed something.
            self._wake_all()
            await self._reconnect()

    async def _reconnect(self) -> None:
        """Until the database answers again (backing off up to ``RECONNECT_MAX_S``)."""
        delay = 0.5
        while True:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
            try:
                await self._connect()
            except Exception:
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
                continue
            self._connected = True
            log.info("notification listener reconnected", extra={"event": "notify.reconnect"})
            # Notifications sent while we were away are lost: everyone looks again.
            self._wake_all()
            return

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    def _deliver(self, channel: str, payload: str) -> None:
        for event in self._waiters.get((channel, payload), ()):
            event.set()
        for callback in self._callbacks.get(channel, ()):
            callback(payload)
