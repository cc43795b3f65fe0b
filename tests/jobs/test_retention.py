"""Retention deletes what is older than its limits, and keeps what is newer or unfinished."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from ragserve.db.pool import Database
from ragserve.jobs import queue
from ragserve.jobs.housekeeping import Housekeeping
from ragserve.jobs.presence import WorkerPresence
from ragserve.jobs.retention import LOCK_KEY, RetentionPolicy, prune
from ragserve.jobs.store import JobStore, NewJob, UploadedFile, WorkerIdentity
from ragserve.settings import Settings

POLICY = RetentionPolicy(jobs_days=30, uploads_days=7)


async def make_job(
    db: Database, name: str, status: str, finished_days_ago: float | None, files: int = 0
) -> str:
    """A job in ``status``, finished that many days ago, with one event and ``files`` files."""
    store = JobStore(db)
    async with db.transaction() as conn:
        row = await store.insert(
            conn,
            NewJob(
                kind="ingest",
                collection="kb",
                query=None,
                request={"name": name},
                request_hash=name,
                max_attempts=3,
            ),
        )
        assert row is not None
        job_id = str(row["id"])
        await queue.enqueue(conn, "ingest", job_id)
        await store.add_files(
            conn, job_id, [UploadedFile(f"{name}-{i}.txt", data=b"x" * 100) for i in range(files)]
        )
        await conn.execute(
            "UPDATE jobs SET status = %s,"
            " finished_at = now() - make_interval(secs => %s) WHERE id = %s",
            (status, None if finished_days_ago is None else finished_days_ago * 86400, job_id),
        )
    return job_id


async def count(db: Database, sql: str, *params: Any) -> int:
    async with db.connection() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return int(next(iter(row.values())))


async def exists(db: Database, job_id: str) -> bool:
    return bool(await count(db, "SELECT count(*) FROM jobs WHERE id = %s", job_id))


async def files_of(db: Database, job_id: str) -> int:
    return await count(db, "SELECT count(*) FROM job_files WHERE job_id = %s", job_id)


async def test_prune_deletes_old_finished_jobs_and_keeps_the_rest(db: Database) -> None:
    old = {s: await make_job(db, f"old-{s}", s, 31) for s in ("succeeded", "failed", "cancelled")}
    recent = await make_job(db, "recent", "succeeded", 29)
    # Unfinished jobs stay, however old they are.
    queued = await make_job(db, "queued", "queued", None)
    running = await make_job(db, "running", "running", None)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET created_at = now() - interval '90 days', updated_at = created_at"
            " WHERE id IN (%s, %s)",
            (queued, running),
        )
    events_before = await count(
        db, "SELECT count(*) FROM job_events WHERE job_id = %s", old["succeeded"]
    )
    assert events_before >= 1

    report = await prune(db, POLICY)

    assert report is not None and report.jobs == 3
    for job_id in old.values():
        assert not await exists(db, job_id)
    assert await exists(db, recent)
    assert await exists(db, queued) and await exists(db, running)
    # Their events went with them.
    assert not await count(
        db, "SELECT count(*) FROM job_events WHERE job_id = %s", old["succeeded"]
    )
    assert await count(db, "SELECT count(*) FROM job_events WHERE job_id = %s", recent)
    # A second run finds nothing more.
    again = await prune(db, POLICY)
    assert again is not None and again.jobs == 0


async def test_uploads_of_failed_ingests_go_after_their_own_limit(db: Database) -> None:
    failed_old = await make_job(db, "f-old", "failed", 8, files=3)
    cancelled_old = await make_job(db, "c-old", "cancelled", 8, files=1)
    failed_recent = await make_job(db, "f-new", "failed", 6, files=2)
    queued = await make_job(db, "q", "queued", None, files=2)

    report = await prune(db, POLICY, batch=1)  # batches of one job: the loop goes on

    assert report is not None and report.uploads == 4 and report.jobs == 0
    assert await files_of(db, failed_old) == 0 and await exists(db, failed_old)
    assert await files_of(db, cancelled_old) == 0
    assert await files_of(db, failed_recent) == 2
    assert await files_of(db, queued) == 2


async def test_expired_cache_rows_and_long_dead_workers_go(db: Database) -> None:
    async with db.connection() as conn:
        for key, expires in (("gone", "-1 minute"), ("fresh", "1 hour")):
            await conn.execute(
                "INSERT INTO answer_cache (cache_key, collection, generation, job_id, result,"
                " expires_at) VALUES (%s, 'kb', 1, gen_random_uuid(), %s, now() + %s::interval)",
                (key, Jsonb({"answer": key}), expires),
            )
        for name, expired in (("dead", "-2 days"), ("late", "-1 hour"), ("live", "1 minute")):
            await conn.execute(
                "INSERT INTO workers (id, host, pid, version, queues, expires_at)"
                " VALUES (gen_random_uuid(), %s, 1, 'v', '{answer}', now() + %s::interval)",
                (name, expired),
            )
    report = await prune(db, POLICY)
    assert report is not None and (report.cache_entries, report.workers) == (1, 1)
    assert await count(db, "SELECT count(*) FROM answer_cache WHERE cache_key = 'fresh'") == 1
    assert await count(db, "SELECT count(*) FROM answer_cache") == 1
    hosts = await count(db, "SELECT count(*) FROM workers WHERE host IN ('late', 'live')")
    assert hosts == 2


async def test_old_rows_of_the_queue_log_and_statistics_go(db: Database) -> None:
    async with db.connection() as conn:
        for age in ("31 days", "1 day"):
            await conn.execute(
                "INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint)"
                " VALUES (now() - %s::interval, 1, 'successful', 0, 'answer')",
                (age,),
            )
            await conn.execute(
                "INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)"
                " VALUES (now() - %s::interval, 1, 0, 'successful', 'answer')",
                (age,),
            )
    report = await prune(db, POLICY)
    assert report is not None and report.queue_log == 2
    assert await count(db, "SELECT count(*) FROM pgqueuer_log") == 1
    assert await count(db, "SELECT count(*) FROM pgqueuer_statistics") == 1


async def test_one_pruner_at_a_time(db: Database) -> None:
    async with db.connection() as holder:
        await holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            assert await prune(db, POLICY) is None
        finally:
            await holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    assert await prune(db, POLICY) is not None


async def test_housekeeping_prunes_on_its_schedule_and_leaves_on_stop(db: Database) -> None:
    old = await make_job(db, "sched-old", "succeeded", 40)
    settings = Settings(
        database_url=db.url, worker_presence_s=0.1, retention_interval_s=0.3, retention_days=30
    )
    worker = WorkerIdentity(str(uuid.uuid4()), "v-test")
    presence = WorkerPresence(db, worker, ["answer"], settings.worker_presence_s)
    stop = asyncio.Event()
    task = asyncio.create_task(Housekeeping(db, settings, presence, lambda: 2).run(stop))
    try:
        for _ in range(100):
            if not await exists(db, old):
                break
            await asyncio.sleep(0.05)
        assert not await exists(db, old)
        live = "SELECT count(*) FROM workers WHERE id = %s AND running = 2 AND expires_at > now()"
        assert await count(db, live, worker.id) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert await count(db, "SELECT count(*) FROM workers WHERE id = %s", worker.id) == 0
