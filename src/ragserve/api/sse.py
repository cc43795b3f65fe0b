"""Server-Sent Events for a job: stored events first, then live ones, until a terminal one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from ragserve.jobs.models import JobEvent
from ragserve.jobs.service import EVENTS_CHANNEL, JobService

KEEPALIVE_S = 15.0


def is_terminal(event: JobEvent) -> bool:
    return event.type in ("done", "error") or (
        event.type == "status" and event.data.get("status") == "cancelled"
    )


def format_event(event: JobEvent) -> str:
    data = json.dumps(event.data, ensure_ascii=False, default=str)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


async def job_event_stream(jobs: JobService, job_id: str, last_event_id: int) -> AsyncIterator[str]:
    """Replay from ``last_event_id``; then wait on NOTIFY for more. Never loses an event:
    we subscribe before reading, and every wake-up re-reads the table from the last id."""
    last = last_event_id
    assert jobs.hub is not None
    async with jobs.hub.subscribe(EVENTS_CHANNEL, job_id) as wake:
        while True:
            wake.clear()
            events = await jobs.jobs.events_after(job_id, last)
            for event in events:
                last = event.seq
                yield format_event(event)
                if is_terminal(event):
                    return
            if events:
                continue
            if (await jobs.get(job_id)).status.terminal:
                # The terminal event commits with the status: read once more, in case it
                # landed between our two reads; if nothing is new, the stream is over
                # (a client resumed after the terminal event).
                if await jobs.jobs.events_after(job_id, last, limit=1):
                    continue
                return
            try:
                await asyncio.wait_for(wake.wait(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"
