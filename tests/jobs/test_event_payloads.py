"""Event streams fed from the notifications' payloads (migration 0010), on a real database.

A stream reads the table to start or resume, and again only when the notifications cannot be
trusted to hold everything: an event too large to be notified, a gap in the numbers, a feed
that overflowed, a listener that reconnected. Whatever the path, the events arrive once each,
in order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from ragserve.db.pool import Database
from ragserve.errors import NotFound
from ragserve.jobs.models import Job, JobEvent
from ragserve.jobs.notify import Feed, NotificationHub
from ragserve.jobs.queue import CANCEL_CHANNEL
from ragserve.jobs.service import EVENTS_CHANNEL, JobService
from ragserve.jobs.store import JobStore
from support.job_rows import running_job

LEGACY_CHANNEL = "ragserve_job_events"  # migration 0002: the job id only
STEP_S = 10.0  # any single step of these tests; a hang fails instead of blocking the run


class CountingStore(JobStore):
    """The real store, counting the reads a stream or a wait makes."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.event_reads = 0
        self.job_reads = 0
        self.openings = 0  # the job and its first events, in one round trip

    async def events_after(self, job_id: str, after: int, limit: int = 500) -> list[JobEvent]:
        self.event_reads += 1
        return await super().events_after(job_id, after, limit)

    async def get(self, job_id: str, *, tenant: str | None) -> Job | None:
        self.job_reads += 1
        return await super().get(job_id, tenant=tenant)

    async def get_with_events_after(
        self, job_id: str, *, tenant: str | None, after: int, limit: int
    ) -> tuple[Job | None, list[JobEvent]]:
        self.openings += 1
        return await super().get_with_events_after(job_id, tenant=tenant, after=after, limit=limit)


@pytest.fixture
async def hub(db: Database) -> AsyncIterator[NotificationHub]:
    notifications = NotificationHub(db, [EVENTS_CHANNEL, CANCEL_CHANNEL])
    await notifications.start()
    yield notifications
    await notifications.stop()


@pytest.fixture
def store(db: Database) -> CountingStore:
    return CountingStore(db)


@pytest.fixture
def service(db: Database, store: CountingStore, hub: NotificationHub) -> JobService:
    return JobService(
        db, store, hub, answerer_name="extractive", embedder_name="e5", max_attempts=3
    )


async def next_event(events: AsyncIterator[JobEvent | None]) -> JobEvent:
    """The next event, skipping keep-alives."""
    while True:
        item = await asyncio.wait_for(anext(events), STEP_S)
        if item is not None:
            return item


async def rest_of(events: AsyncIterator[JobEvent | None]) -> list[JobEvent]:
    """The events until the stream ends (the terminal one included)."""
    out: list[JobEvent] = []
    while True:
        try:
            out.append(await next_event(events))
        except StopAsyncIteration:
            return out


def tokens(*texts: str) -> list[tuple[str, dict[str, Any]]]:
    return [("token", {"text": text, "attempt": 1}) for text in texts]


async def test_live_events_come_from_the_payloads_and_wait_reads_the_job_twice(
    db: Database, store: CountingStore, service: JobService
) -> None:
    attempt = await running_job(store)
    events = aiter(service.events(attempt.job_id, 0, idle_s=STEP_S, tenant=None))
    waiting = asyncio.ensure_future(service.wait(attempt.job_id, 2 * STEP_S, tenant=None))
    assert [(await next_event(events)).seq for _ in range(2)] == [1, 2]  # from the table
    assert store.event_reads == 1

    for batch in (tokens("Twenty", " days"), tokens(" a"), tokens(" year.")):
        assert await store.append_events(attempt, batch)
    assert await store.succeed(attempt, {"answer": "Twenty days a year.", "sources": []})

    live = await rest_of(events)
    assert [e.seq for e in live] == [3, 4, 5, 6, 7]
    assert "".join(e.data["text"] for e in live if e.type == "token") == "Twenty days a year."
    assert live[-1].type == "done" and live[-1].data["result"]["answer"] == "Twenty days a year."
    assert store.event_reads == 1  # nothing read again: every live event came notified

    job = await asyncio.wait_for(waiting, STEP_S)
    assert job.status == "succeeded"
    # The stream read the job once, the wait twice (at the start, after `done`): not once
    # per token batch.
    assert store.job_reads == 3


async def test_an_opened_stream_reads_once_then_follows_the_payloads(
    store: CountingStore, service: JobService, hub: NotificationHub
) -> None:
    attempt = await running_job(store)
    with pytest.raises(NotFound):
        await service.open_events(str(uuid.uuid4()), 0, idle_s=STEP_S, tenant=None)
    with pytest.raises(NotFound):  # another tenant's job: as if it did not exist
        await service.open_events(attempt.job_id, 0, idle_s=STEP_S, tenant="someone-else")
    assert not hub.following  # the failed openings let go of their feeds

    events = await service.open_events(attempt.job_id, 1, idle_s=STEP_S, tenant=None)
    assert hub.following  # followed before the table is read: nothing falls between
    assert await store.append_events(attempt, tokens("Twenty"))
    assert await store.succeed(attempt, {"answer": "Twenty", "sources": []})
    assert [e.seq for e in await rest_of(events)] == [2, 3, 4]  # after Last-Event-ID 1
    # One round trip for the opening (two more for the 404s above), none after it.
    assert (store.openings, store.job_reads, store.event_reads) == (3, 0, 0)
    assert not hub.following


async def test_an_event_too_large_to_notify_is_read_from_the_table(
    db: Database, store: CountingStore, service: JobService
) -> None:
    attempt = await running_job(store)
    big = "x" * 9000  # over PostgreSQL's 8000-byte payload limit
    async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {EVENTS_CHANNEL}")
        await listener.execute(f"LISTEN {LEGACY_CHANNEL}")
        events = aiter(service.events(attempt.job_id, 2, idle_s=STEP_S, tenant=None))
        assert await store.append_events(attempt, tokens("small"))
        assert (await next_event(events)).data["text"] == "small"
        assert await store.append_events(attempt, tokens(big, "after"))
        assert [(e.seq, e.data["text"]) for e in [await next_event(events) for _ in range(2)]] == [
            (4, big),
            (5, "after"),
        ]
        notes = [n async for n in listener.notifies(timeout=STEP_S, stop_after=5)]

    assert store.event_reads == 2  # the start, and the oversized event
    published = [json.loads(n.payload) for n in notes if n.channel == EVENTS_CHANNEL]
    assert published[0] == {
        "job_id": attempt.job_id,
        "seq": 3,
        "type": "token",
        "data": {"text": "small", "attempt": 1},
    }
    assert published[1] == {"job_id": attempt.job_id, "seq": 4, "type": "token", "more": True}
    assert published[2]["seq"] == 5 and "more" not in published[2]
    # The previous release's channel still carries the job id, once per transaction (PostgreSQL
    # folds identical notifications of one transaction into one).
    assert [n.payload for n in notes if n.channel == LEGACY_CHANNEL] == [attempt.job_id] * 2


async def test_a_gap_in_the_notified_numbers_is_filled_from_the_table(
    db: Database, store: CountingStore, service: JobService
) -> None:
    attempt = await running_job(store)
    events = aiter(service.events(attempt.job_id, 0, idle_s=STEP_S, tenant=None))
    assert [(await next_event(events)).seq for _ in range(2)] == [1, 2]
    # Event 3 stored without its notifications (triggers off for this transaction only):
    # the stream learns of it from the gap before event 4.
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "WITH bumped AS (UPDATE jobs SET event_seq = event_seq + 1 WHERE id = %s"
            " RETURNING id, event_seq, attempts)"
            " INSERT INTO job_events (job_id, seq, attempt, type, data)"
            """ SELECT id, event_seq, attempts, 'token', '{"text": "silent"}' FROM bumped""",
            (attempt.job_id,),
        )
    assert await store.append_events(attempt, tokens("loud"))
    got = [await next_event(events) for _ in range(2)]
    assert [(e.seq, e.data["text"]) for e in got] == [(3, "silent"), (4, "loud")]
    assert store.event_reads == 2


async def test_a_resumed_stream_starts_after_last_event_id_and_ends_at_a_terminal_job(
    db: Database, store: CountingStore, service: JobService
) -> None:
    attempt = await running_job(store)
    assert await store.append_events(attempt, tokens("a", "b", "c"))  # 3, 4, 5
    events = aiter(service.events(attempt.job_id, 3, idle_s=STEP_S, tenant=None))
    assert [(await next_event(events)).seq for _ in range(2)] == [4, 5]
    assert await store.append_events(attempt, tokens("d"))
    assert await store.succeed(attempt, {"answer": "abcd", "sources": []})
    assert [(e.seq, e.type) for e in await rest_of(events)] == [(6, "token"), (7, "done")]

    # Resumed after the terminal event: nothing to send, the stream ends at once.
    assert await rest_of(service.events(attempt.job_id, 7, idle_s=STEP_S, tenant=None)) == []
    # Resumed before it, once the job is over: the stored rest, then the end.
    after = await rest_of(service.events(attempt.job_id, 5, idle_s=STEP_S, tenant=None))
    assert [e.seq for e in after] == [6, 7]


async def test_events_sent_while_the_listener_reconnects_are_read_from_the_table(
    db: Database, store: CountingStore, service: JobService, hub: NotificationHub
) -> None:
    cancels: list[str] = []
    hub.on(CANCEL_CHANNEL, cancels.append)  # a worker's callbacks share the listener
    attempt = await running_job(store)
    events = aiter(service.events(attempt.job_id, 0, idle_s=STEP_S, tenant=None))
    assert [(await next_event(events)).seq for _ in range(2)] == [1, 2]

    async with db.connection() as conn:
        killed = await (
            await conn.execute(
                "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
            )
        ).fetchall()
    assert [row["done"] for row in killed] == [True]  # the hub's listening connection
    # Stored while the hub is without its connection: no notification reaches it.
    assert await store.append_events(attempt, tokens("while", " away"))
    got = [await next_event(events) for _ in range(2)]
    assert [(e.seq, e.data["text"]) for e in got] == [(3, "while"), (4, " away")]
    assert store.event_reads >= 2  # the start, and the read after the reconnection

    # Once reconnected, notifications flow again, to streams and to callbacks alike.
    assert await store.append_events(attempt, tokens("back"))
    assert (await next_event(events)).data["text"] == "back"
    async with db.connection() as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, attempt.job_id))
    for _ in range(100):
        if cancels:
            break
        await asyncio.sleep(0.05)
    assert cancels == [attempt.job_id]


async def test_a_feed_that_overflows_is_lost_until_taken() -> None:
    feed = Feed(capacity=2)
    feed.put({"seq": 1})
    feed.put({"seq": 2})
    assert await feed.wait(0.01)
    assert feed.take() == [{"seq": 1}, {"seq": 2}]
    assert not await feed.wait(0.01)  # empty: times out
    for seq in range(3, 6):
        feed.put({"seq": seq})  # the third does not fit: the reader must read the table
    assert await feed.wait(0.01)
    assert feed.take() is None
    feed.put({"seq": 6})  # after the take, the feed starts afresh
    assert feed.take() == [{"seq": 6}]


async def test_an_overflowing_stream_catches_up_from_the_table(
    db: Database, store: CountingStore, hub: NotificationHub
) -> None:
    """A reader slower than its job: its feed overflows and it reads the table instead."""
    attempt = await running_job(store)
    service = JobService(
        db, store, hub, answerer_name="extractive", embedder_name="e5", max_attempts=3
    )
    events = aiter(service.events(attempt.job_id, 0, idle_s=STEP_S, tenant=None))
    assert [(await next_event(events)).seq for _ in range(2)] == [1, 2]
    many = [str(i) for i in range(300)]  # more than a feed holds (FEED_CAPACITY = 256)
    assert await store.append_events(attempt, tokens(*many))
    assert await store.succeed(attempt, {"answer": "".join(many), "sources": []})
    await asyncio.sleep(1.0)  # all notified meanwhile, none taken
    rest = await rest_of(events)
    assert [e.seq for e in rest] == list(range(3, 304))
    assert store.event_reads == 2
