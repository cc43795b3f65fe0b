"""Server-Sent Events for a job: the job service's events, in the ``text/event-stream`` format.

The first event of every stream carries a ``retry:`` field, so that a client whose stream
ends early (this process shutting down, the database lost) reconnects soon, to any replica,
with ``Last-Event-ID``. (In the event's frame rather than a frame of its own: some clients,
httpx-sse among them, report a data-less frame as an empty event.) Event ids are the job's
sequence numbers, so the resumed stream continues exactly after the last event the client
saw: nothing lost, nothing repeated. Only the job's terminal event (``done``, ``error``) ends
a stream on purpose; an end without one means "resume".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from ragserve.errors import DatabaseError
from ragserve.jobs.models import JobEvent

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
KEEPALIVE = ": keepalive\n\n"
RECONNECT_MS = 1000


def format_event(event: JobEvent, *, retry_ms: int | None = None) -> str:
    data = json.dumps(event.data, ensure_ascii=False, default=str)
    retry = "" if retry_ms is None else f"retry: {retry_ms}\n"
    return f"{retry}id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


async def job_event_stream(
    events: AsyncIterator[JobEvent | None], job_id: str, closing: asyncio.Event
) -> AsyncIterator[str]:
    """A job's ``events`` (``JobService.open_events``: replayed from ``Last-Event-ID``, then
    live) as SSE, until the job's terminal event, or until ``closing`` is set (the process is
    shutting down) or the database is lost: then the stream just ends and the client resumes
    elsewhere."""
    retry_ms: int | None = RECONNECT_MS
    try:
        async with EventsUntil(events, closing) as items:
            while True:
                event = await items.next()
                if isinstance(event, StreamEnd):
                    return
                if event is None:
                    yield KEEPALIVE
                else:
                    yield format_event(event, retry_ms=retry_ms)
                    retry_ms = None
    except DatabaseError as exc:
        log.warning(
            "event stream ended: database unavailable",
            extra={"event": "sse.db_lost", "job_id": job_id, "error": str(exc)},
        )


class StreamEnd:
    """The stream is over (its events ran out, or ``closing`` was set)."""


class _Failed:
    """What reading the events raised, handed to the reader of ``EventsUntil``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_Item = JobEvent | None | StreamEnd | _Failed


class EventsUntil:
    """The items of a job's ``events`` one at a time (``next``), until they run out or
    ``closing`` is set (then ``StreamEnd``).

    One task per stream reads ``events`` (at most one item ahead), another waits for
    ``closing``; they hand over through one queue. An item that arrives together with
    ``closing`` may still be delivered: it costs nothing, and one dropped would not be lost
    anyway (the client resumes from its last id). Why not wait for "the next item or
    ``closing``" at each item: that takes two new tasks per event, and a waiter added to
    ``closing`` and removed again, which ``asyncio.Event`` finds by a linear search of all
    its waiters, one per open stream: 24 us per event with 25 streams open, 40 with 1,000,
    against 4.5 this way (docs/PERFORMANCE.md, "SSE streams and dispatch (third session)").
    """

    def __init__(self, events: AsyncIterator[JobEvent | None], closing: asyncio.Event) -> None:
        self._events = events
        self._closing = closing
        self._items: asyncio.Queue[_Item] = asyncio.Queue(maxsize=1)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> EventsUntil:
        if not self._closing.is_set():
            self._tasks = [
                asyncio.create_task(self._read(), name="sse-events"),
                asyncio.create_task(self._until_closing(), name="sse-closing"),
            ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await close_events(self._events)

    async def next(self) -> JobEvent | StreamEnd | None:
        """The next event, ``None`` for a keep-alive, or ``StreamEnd``; raises what reading
        the events raised."""
        if not self._tasks:
            return StreamEnd()  # closing was set before the stream started
        item = await self._items.get()
        if isinstance(item, _Failed):
            raise item.error
        return item

    async def _read(self) -> None:
        try:
            async for event in self._events:
                await self._items.put(event)
        except Exception as exc:
            await self._items.put(_Failed(exc))
        else:
            await self._items.put(StreamEnd())

    async def _until_closing(self) -> None:
        await self._closing.wait()
        await self._items.put(StreamEnd())


async def close_events(events: AsyncIterator[JobEvent | None]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
