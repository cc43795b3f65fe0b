"""Server-Sent Events for a job: the job service's events, in the ``text/event-stream`` format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from ragserve.jobs.models import JobEvent
from ragserve.jobs.service import JobService

KEEPALIVE_S = 15.0
KEEPALIVE = ": keepalive\n\n"


def format_event(event: JobEvent) -> str:
    data = json.dumps(event.data, ensure_ascii=False, default=str)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


async def job_event_stream(jobs: JobService, job_id: str, last_event_id: int) -> AsyncIterator[str]:
    """Replay from ``last_event_id``, then follow live, until the job's terminal event."""
    async for event in jobs.events(job_id, last_event_id, idle_s=KEEPALIVE_S):
        yield KEEPALIVE if event is None else format_event(event)
