"""Token events of an attempt (``EventWriter``): the first at once, the rest batched and written
in the background, the last ones with the result; a fenced attempt still stops."""

from __future__ import annotations

import asyncio
import time

import pytest

from ragserve.db.pool import Database
from ragserve.jobs.models import JobEvent
from ragserve.jobs.runner import EventWriter, JobFenced
from ragserve.jobs.store import JobStore
from support.job_rows import running_job


async def tokens_stored(store: JobStore, job_id: str, *, within_s: float) -> list[JobEvent]:
    deadline = time.monotonic() + within_s
    while not (found := [e for e in await store.events_after(job_id, 0) if e.type == "token"]):
        assert time.monotonic() < deadline, "no token event was stored"
        await asyncio.sleep(0.01)
    return found


async def test_first_token_at_once_then_batches_and_the_rest_with_the_result(db: Database) -> None:
    store = JobStore(db)
    attempt = await running_job(store)
    writer = EventWriter(store, attempt, flush_s=30.0)  # no timed flush during this test
    await writer.emit("sources", {"sources": []})
    words = [f"w{i} " for i in range(20)]
    await writer.token(words[0])
    first = await tokens_stored(store, attempt.job_id, within_s=5.0)
    assert [e.data["text"] for e in first] == [words[0]]
    for word in words[1:]:
        await writer.token(word)
    assert await store.succeed(
        attempt, {"answer": "".join(words), "sources": []}, events=await writer.drain()
    )

    events = await store.events_after(attempt.job_id, 0)
    assert [e.type for e in events] == ["status", "status", "sources", "token", "token", "done"]
    assert [e.seq for e in events] == list(range(1, 7))
    assert "".join(e.data["text"] for e in events if e.type == "token") == "".join(words)
    assert all(e.data["attempt"] == attempt.number for e in events[2:5])


async def test_fenced_attempt_stops_at_a_token(db: Database) -> None:
    """Another attempt takes the job over: a background write is refused, and the stale
    attempt's token loop raises ``JobFenced`` within a few flushes, storing nothing more."""
    store = JobStore(db)
    stale = await running_job(store)
    writer = EventWriter(store, stale, flush_s=0.05)
    await writer.token("before ")
    await tokens_stored(store, stale.job_id, within_s=5.0)
    current = await store.start_attempt(stale.job_id)
    assert current is not None and current.number == stale.number + 1
    deadline = time.monotonic() + 5.0
    with pytest.raises(JobFenced):
        while time.monotonic() < deadline:
            await writer.token("after ")
            await asyncio.sleep(0.01)
    with pytest.raises(JobFenced):
        await writer.drain()
    tokens = [e for e in await store.events_after(stale.job_id, 0) if e.type == "token"]
    assert [e.data["text"] for e in tokens] == ["before "]
