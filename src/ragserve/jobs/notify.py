"""LISTEN/NOTIFY fan-out: one listening connection per process, many subscribers.

Two ways to listen. ``on``: a callback per notification, with its payload (a worker's
cancellations). ``follow``: on a channel whose payloads are JSON objects, the messages for one
key (a job's events, ``ragserve.jobs.service``), delivered to a bounded ``Feed`` per subscriber.
A feed that overflows, or that may have missed messages because the listener reconnected, is
marked ``lost``: its reader then reads the source of truth again. So a notification is never
the only copy of anything: a lost one costs a read, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from psycopg import sql

from ragserve.db.pool import Connection, Database

log = logging.getLogger(__name__)

RECONNECT_MAX_S = 5.0

FEED_CAPACITY = 256
"""Messages a feed keeps for a reader that does not take them (a slow SSE client); beyond,
the feed is emptied and marked lost, and the reader reads the table instead."""


class Feed:
    """The messages for one key of a JSON channel, for one subscriber, in the order they were
    sent; or, once ``lost``, a note that some may be missing."""

    def __init__(self, capacity: int = FEED_CAPACITY) -> None:
        self.capacity = capacity
        self._lost = False
        self._messages: deque[dict[str, Any]] = deque()
        self._news = asyncio.Event()

    def put(self, message: dict[str, Any]) -> None:
        if self._lost:
            return  # its reader reads everything from the source anyway
        if len(self._messages) >= self.capacity:
            self.mark_lost()
            return
        self._messages.append(message)
        self._news.set()

    def mark_lost(self) -> None:
        self._lost = True
        self._messages.clear()
        self._news.set()

    async def wait(self, timeout_s: float) -> bool:
        """True as soon as there is something to ``take``; False after ``timeout_s`` without."""
        if self._messages or self._lost:
            return True
        self._news.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._news.wait()
        except TimeoutError:
            return False
        return True

    def take(self) -> list[dict[str, Any]] | None:
        """The waiting messages, oldest first (the feed is then empty); None if some may have
        been lost: the feed starts afresh, and the caller reads the source of truth, after
        this call, so that nothing published meanwhile falls between the two."""
        if self._lost:
            self._lost = False
            return None
        messages = list(self._messages)
        self._messages.clear()
        return messages


class NotificationHub:
    def __init__(self, db: Database, channels: list[str]) -> None:
        self.db = db
        self.channels = channels
        self._feeds: dict[tuple[str, str], set[Feed]] = defaultdict(set)
        self._key_fields: dict[str, str] = {}
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
    async def follow(
        self, channel: str, key: str, *, key_field: str, capacity: int = FEED_CAPACITY
    ) -> AsyncIterator[Feed]:
        """A feed of the messages on ``channel`` (JSON objects) whose ``key_field`` is ``key``,
        from now on, for as long as the context lasts."""
        known = self._key_fields.setdefault(channel, key_field)
        if known != key_field:
            raise ValueError(f"channel {channel!r} is keyed by {known!r}, not {key_field!r}")
        feed = Feed(capacity)
        self._feeds[(channel, key)].add(feed)
        try:
            yield feed
        finally:
            feeds = self._feeds[(channel, key)]
            feeds.discard(feed)
            if not feeds:
                del self._feeds[(channel, key)]

    @property
    def following(self) -> int:
        """How many feeds are open (one per event stream or wait that follows a job)."""
        return sum(len(feeds) for feeds in self._feeds.values())

    @property
    def healthy(self) -> bool:
        return self._connected and self._task is not None and not self._task.done()

    async def _pump(self) -> None:
        """Deliver notifications; if the connection drops, mark every feed lost and reconnect."""
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
            # Followers fall back to reading the table; they may have missed something.
            self._lose_all()
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
            # Notifications sent while we were away are lost: everyone reads again.
            self._lose_all()
            return

    def _lose_all(self) -> None:
        for feeds in self._feeds.values():
            for feed in feeds:
                feed.mark_lost()

    def _deliver(self, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            callback(payload)
        key_field = self._key_fields.get(channel)
        if key_field is None or not self._feeds:
            return  # nobody follows anything: no need to decode
        try:
            message = json.loads(payload)
            key = str(message[key_field])
        except (ValueError, TypeError, KeyError):
            log.warning(
                "notification without a key ignored",
                extra={"event": "notify.malformed", "channel": channel, "payload": payload[:200]},
            )
            return
        # One decoded message, shared by the key's followers (they only read it).
        for feed in self._feeds.get((channel, key), ()):
            feed.put(message)
