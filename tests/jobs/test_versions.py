"""Every attempt records the version that ran it; the job shows the latest attempt's version."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ragserve import __version__
from ragserve.db.pool import Database
from ragserve.jobs import queue
from ragserve.jobs.store import JobStore, NewJob, WorkerIdentity
from ragserve.jobs.version import pipeline_version
from ragserve.settings import Settings

STABLE = WorkerIdentity(str(uuid.uuid4()), "0.1.0+aaaaaaaa")
CANARY = WorkerIdentity(str(uuid.uuid4()), "0.2.0+bbbbbbbb")


async def new_job(db: Database, store: JobStore, query: str = "q?") -> str:
    async with db.transaction() as conn:
        row = await store.insert(
            conn,
            NewJob(
                kind="answer",
                collection="kb",
                query=query,
                request={"query": query},
                request_hash=query,
                max_attempts=3,
            ),
        )
        assert row is not None
        await queue.enqueue(conn, "answer", str(row["id"]))
    return str(row["id"])


async def attempts_of(db: Database, job_id: str) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT attempt, version, worker_id::text, outcome, finished_at IS NOT NULL AS done"
            " FROM job_attempts WHERE job_id = %s ORDER BY attempt",
            (job_id,),
        )
        return await cur.fetchall()


async def running_events(store: JobStore, job_id: str) -> list[dict[str, Any]]:
    events = await store.events_after(job_id, 0)
    return [e.data for e in events if e.type == "status" and e.data["status"] == "running"]


def test_version_is_release_plus_pipeline_hash() -> None:
    settings = Settings(database_url="postgresql://unused")
    version = pipeline_version(settings, answerer="extractive:v1", embedder="local:e5")
    assert re.fullmatch(re.escape(__version__) + r"\+[0-9a-f]{8}", version)
    assert version == pipeline_version(settings, answerer="extractive:v1", embedder="local:e5")
    other_model = pipeline_version(settings, answerer="openai:m@x", embedder="local:e5")
    other_chunks = pipeline_version(
        settings.model_copy(update={"chunk_size": 400}), answerer="extractive:v1", embedder="x"
    )
    assert len({version, other_model, other_chunks}) == 3


async def test_each_attempt_records_its_version(db: Database) -> None:
    store = JobStore(db)
    job_id = await new_job(db, store)
    queued = await store.get(job_id, tenant=None)
    assert queued is not None and queued.version is None  # never run

    first = await store.start_attempt(job_id, STABLE)
    assert first is not None and first.version == STABLE.version
    job = await store.get(job_id, tenant=None)
    assert job is not None and job.version == STABLE.version
    assert await store.requeue(first, {"type": "Boom", "message": "transient"})

    second = await store.start_attempt(job_id, CANARY)
    assert second is not None and second.number == 2
    job = await store.get(job_id, tenant=None)
    assert job is not None and job.version == CANARY.version  # the latest attempt's
    assert await store.succeed(second, {"answer": "a", "sources": []})

    assert await attempts_of(db, job_id) == [
        {"attempt": 1, "version": STABLE.version, "worker_id": STABLE.id, "outcome": "retried",
         "done": True},
        {"attempt": 2, "version": CANARY.version, "worker_id": CANARY.id,
         "outcome": "succeeded", "done": True},
    ]  # fmt: skip
    # The events of the retried attempt say which version took over.
    assert await running_events(store, job_id) == [
        {"status": "running", "attempt": 1, "version": STABLE.version},
        {"status": "running", "attempt": 2, "version": CANARY.version},
    ]
    listed = {j.job_id: j for j in await store.newest(None, 10, tenant=None)}
    assert listed[job_id].version == CANARY.version


async def test_takeover_and_dead_letter_are_recorded(db: Database) -> None:
    store = JobStore(db)
    job_id = await new_job(db, store)
    first = await store.start_attempt(job_id, STABLE)
    # Its worker died: the queue redelivers, another worker takes the running job over.
    second = await store.start_attempt(job_id, CANARY)
    assert first is not None and second is not None
    assert first.waited_s is not None and first.waited_s >= 0
    assert second.waited_s is None  # a takeover is not queue wait
    events = await running_events(store, job_id)
    assert events[-1] == {
        "status": "running",
        "attempt": 2,
        "version": CANARY.version,
        "took_over": True,
    }
    assert await store.fail(second, {"type": "Bad", "message": "for good"})
    rows = await attempts_of(db, job_id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, None), (2, "failed")]


async def test_hand_back_is_an_outcome_of_its_own(db: Database) -> None:
    store = JobStore(db)
    job_id = await new_job(db, store)
    attempt = await store.start_attempt(job_id, STABLE)
    assert attempt is not None
    assert await store.requeue(attempt, None, refund=True)
    assert [r["outcome"] for r in await attempts_of(db, job_id)] == ["handed_back"]


async def test_an_older_release_shows_no_version_rather_than_a_stale_one(db: Database) -> None:
    """Expand-only rollout: a worker of the release before migration 0003 records no attempt
    row; the job then shows null, not the version of the attempt before it."""
    store = JobStore(db)
    job_id = await new_job(db, store)
    first = await store.start_attempt(job_id, CANARY)
    assert first is not None
    assert await store.requeue(first, {"type": "Boom", "message": "transient"})
    old = await store.start_attempt(job_id)  # as the old code does: no identity
    assert old is not None and old.number == 2
    job = await store.get(job_id, tenant=None)
    assert job is not None and job.version is None
    assert [r["attempt"] for r in await attempts_of(db, job_id)] == [1]


async def test_queue_wait_counts_from_when_the_retry_became_due(db: Database) -> None:
    store = JobStore(db)
    job_id = await new_job(db, store)
    attempt = await store.start_attempt(job_id, STABLE)
    assert attempt is not None
    assert await store.requeue(attempt, {"type": "Boom", "message": "transient"})
    # The queue entry became due just now although the job was requeued earlier: waited ~0.
    due = datetime.now(UTC) + timedelta(seconds=1)
    retry = await store.start_attempt(job_id, STABLE, eligible_at=due)
    assert retry is not None and retry.waited_s == 0
