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
from ragserve.jobs.models import Job, JobEvent
from ragserve.jobs.service import JobService

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
KEEPALIVE = ": keepalive\n\n"
RECONNECT_MS = 1000


def format_event(event: JobEvent, *, retry_ms: int | None = None) -> str:
    data = json.dumps(event.data, ensure_ascii=False, default=str)
    retry = "" if retry_ms is None else f"retry: {retry_ms}\n"
    return f"{retry}id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


async def job_event_stream(
    jobs: JobService,
    job_id: str,
    last_event_id: int,
    closing: asyncio.Event,
    *,
    tenant: str | None,
    job: Job | None = None,
) -> AsyncIterator[str]:
    """Replay from ``last_event_id``, then follow live, until the job's terminal event, or
    until ``closing`` is set (the process is shutting down) or the database is lost: then the
    stream just ends and the client resumes elsewhere. ``job``: as the caller has just read it
    (``JobService.events`` then need not read it again)."""
    events = aiter(jobs.events(job_id, last_event_id, idle_s=KEEPALIVE_S, tenant=tenant, job=job))
    retry_ms: int | None = RECONNECT_MS
    try:
        while True:
            event = await next_unless(events, closing)
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
    finally:
        await close_events(events)


class StreamEnd:
    """The stream is over (its events ran out, or ``closing`` was set)."""


async def next_unless(
    events: AsyncIterator[JobEvent | None], closing: asyncio.Event
) -> JobEvent | StreamEnd | None:
    """The next item of ``events``, or ``StreamEnd`` if ``closing`` is set first.

    An item that arrives together with ``closing`` is still delivered: it costs nothing, and
    one dropped here would not be lost anyway (the client resumes from its last id).
    """
    if closing.is_set():
        return StreamEnd()
    following = asyncio.ensure_future(anext(events))
    closed = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait({following, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        if not following.done():
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await following
    if following.cancelled():
        return StreamEnd()
    try:
        return following.result()
    except StopAsyncIteration:
        return StreamEnd()


async def close_events(events: AsyncIterator[JobEvent | None]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
