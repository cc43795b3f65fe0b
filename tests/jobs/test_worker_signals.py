"""Workers under real signals: SIGKILL mid-job, SIGTERM drain, and attempt fencing.

Real processes (``ragserve api`` + ``ragserve worker``) on a database of the test's own, the
session's mock LLM as the answerer (its ``ttft`` decides how long a job stays in flight), and
the workers' JSON log lines (``job.started`` with ``job_id`` and ``attempt``) to tell which
process ran what. Every wait is bounded.

The mock reads ``ttft`` when a request *starts*: changing it later does not speed up requests
already in flight, so each test sets it before the requests it is meant for.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from ragserve.db.pool import Database
from ragserve.jobs.store import JobStore
from support import service_env
from support.job_rows import inserted_job
from support.workers import (
    events_by_job,
    get_jobs,
    ingest,
    logged,
    questions,
    started,
    submit,
    ts,
    wait_for,
    wait_terminal,
    wait_worker_ready,
)

if TYPE_CHECKING:
    from support import MockLLM, Proc


# --------------------------------------------------------------------------- 1. SIGKILL


def test_sigkill_with_jobs_in_flight_redelivers_and_fences(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
    start_worker: Callable[..., Proc],
) -> None:
    """A worker killed mid-job loses nothing; its jobs finish elsewhere, each exactly once."""
    database_url = new_database_url()
    env = service_env(
        database_url,
        llm_base_url=llm.base_url,
        heartbeat_timeout_s=3,
        worker_concurrency=8,
        max_attempts=3,
    )
    llm.configure(ttft=2.0, tps=200)
    workers = (start_worker(env), start_worker(env))  # they boot while the API does
    url, api = start_service(env, command="api")
    procs = (api, *workers)
    for worker in workers:
        wait_worker_ready(worker)

    with httpx.Client(base_url=url, timeout=10) as client:
        ingest(client, "kb", procs)
        job_ids = submit(client, "kb", questions("kill", 10))
        ids = set(job_ids)

        # 10 jobs, 8 slots per worker: both workers get some; all run at once.
        wait_for(
            lambda: sum(len(started(w, ids)) for w in workers) == len(ids),
            20,
            "every job to start",
            procs,
        )
        victim, survivor = sorted(workers, key=lambda w: len(started(w, ids)), reverse=True)
        victim.signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL

        # The victim's jobs that are not `succeeded` now were in flight when it died (with
        # ttft=2 s: all of them, normally); job id -> the attempt that died with it.
        on_victim = started(victim, ids)
        snapshot = get_jobs(client, list(on_victim))
        assert {j["status"] for j in snapshot.values()} <= {"running", "succeeded"}, snapshot
        in_flight = {j: a for j, a in on_victim.items() if snapshot[j]["status"] == "running"}
        assert in_flight, f"no job was in flight on the killed worker:\n{victim.log()[-3000:]}"

        jobs = wait_terminal(client, job_ids, 60, procs)

    assert {j: jobs[j]["status"] for j in job_ids} == dict.fromkeys(job_ids, "succeeded")
    retaken = started(survivor, set(in_flight))
    for job_id, dead_attempt in in_flight.items():
        assert jobs[job_id]["attempts"] >= 2, jobs[job_id]
        assert retaken.get(job_id, 0) > dead_attempt, (job_id, retaken)
    for job_id in ids - set(in_flight):
        assert jobs[job_id]["attempts"] == 1, jobs[job_id]

    events = events_by_job(database_url, job_ids)
    for job_id in job_ids:
        done = [e for e in events[job_id] if e["type"] == "done"]
        assert len(done) == 1, (job_id, events[job_id])
        assert not [e for e in events[job_id] if e["type"] == "error"], events[job_id]
        # The result is the final attempt's, and the killed attempt wrote nothing after it.
        assert done[0]["attempt"] == jobs[job_id]["attempts"]
        assert done[0]["data"]["result"] == jobs[job_id]["result"]
        assert jobs[job_id]["result"]["answer"].endswith("[1]"), jobs[job_id]["result"]
        if job_id in in_flight:
            assert done[0]["attempt"] != in_flight[job_id]
            assert events[job_id][-1]["type"] == "done"
    assert survivor.popen.poll() is None, survivor.log()[-3000:]


# --------------------------------------------------------------------------- 2. SIGTERM


def test_sigterm_drain_lets_short_jobs_finish(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
    start_worker: Callable[..., Proc],
) -> None:
    """Jobs that end within RAGSERVE_DRAIN_S finish on the draining worker, in one attempt."""
    database_url = new_database_url()
    # Answers take 4 s and the drain allows 8: every job ends inside it. (4 s, not 1 s: the
    # 4 jobs may start 2+ s apart, as each of pgqueuer's dequeues can wait ~1 s for its
    # connection, and all of them must still be running at SIGTERM.)
    env = service_env(database_url, llm_base_url=llm.base_url, worker_concurrency=4, drain_s=8)
    worker = start_worker(env)
    url, api = start_service(env, command="api")
    procs = (api, worker)
    wait_worker_ready(worker)
    llm.configure(ttft=4.0, tps=200)

    with httpx.Client(base_url=url, timeout=10) as client:
        ingest(client, "kb", procs)
        job_ids = submit(client, "kb", questions("short", 4))
        ids = set(job_ids)
        wait_for(lambda: len(started(worker, ids)) == 4, 15, "4 jobs running", procs)

        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.log()[-4000:]
        jobs = get_jobs(client, job_ids)

    assert {j["status"] for j in jobs.values()} == {"succeeded"}, jobs
    assert {j["attempts"] for j in jobs.values()} == {1}, jobs
    draining = logged(worker, "worker.draining")
    assert len(draining) == 1 and draining[0]["running"] == 4, draining
    # Every job was still in flight when the drain began, and finished during it.
    succeeded = {e["job_id"]: ts(e) for e in logged(worker, "job.succeeded") if e["job_id"] in ids}
    assert set(succeeded) == ids
    assert all(t >= ts(draining[0]) for t in succeeded.values()), (draining, succeeded)
    assert not logged(worker, "job.handed_back")
    events = events_by_job(database_url, job_ids)
    for job_id in job_ids:
        assert [e["type"] for e in events[job_id]].count("done") == 1
        assert not [e for e in events[job_id] if e["data"].get("handed_back")]


def test_sigterm_drain_hands_back_long_jobs_at_once(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
    start_worker: Callable[..., Proc],
) -> None:
    """Jobs still running after RAGSERVE_DRAIN_S go back to the queue at once, refunded.

    The heartbeat timeout is 30 s here, so the next worker can only pick them up within a
    couple of seconds if the draining worker really handed them back; a redelivery by
    heartbeat expiry would come far too late.
    """
    database_url = new_database_url()
    env = service_env(
        database_url,
        llm_base_url=llm.base_url,
        worker_concurrency=4,
        heartbeat_timeout_s=30,
        max_attempts=1,
    )
    worker_a = start_worker({**env, "RAGSERVE_DRAIN_S": "1"})
    url, api = start_service(env, command="api")
    wait_worker_ready(worker_a)

    with httpx.Client(base_url=url, timeout=10) as client:
        ingest(client, "kb", (api, worker_a))
        llm.configure(ttft=20.0, tps=200)
        job_ids = submit(client, "kb", questions("long", 4))
        ids = set(job_ids)
        wait_for(
            lambda: len(started(worker_a, ids)) == 4, 15, "4 jobs running on A", (api, worker_a)
        )
        assert {j["status"] for j in get_jobs(client, job_ids).values()} == {"running"}

        # Exit well before the 20 s answers could have finished: the jobs were not waited
        # for. (Stopping pgqueuer adds a few seconds after the hand-back: its driver shares
        # one connection between LISTEN and queries, so each query can wait ~1 s for it.)
        sigterm_at = time.monotonic()
        worker_a.signal(signal.SIGTERM)
        assert worker_a.wait(15) == 0, worker_a.log()[-4000:]
        assert time.monotonic() - sigterm_at < 12, worker_a.log()[-4000:]

        handed_back = {e["job_id"]: ts(e) for e in logged(worker_a, "job.handed_back")}
        assert set(handed_back) == ids, worker_a.log()[-4000:]
        # ... after the drain period (1 s) and not much later.
        draining = ts(logged(worker_a, "worker.draining")[0])
        assert all(0.9 <= t - draining < 4 for t in handed_back.values()), handed_back
        assert not [e for e in logged(worker_a, "job.succeeded") if e["job_id"] in ids]
        back = get_jobs(client, job_ids)
        assert {j["status"] for j in back.values()} == {"queued"}, back
        assert {j["attempts"] for j in back.values()} == {1}, back
        events = events_by_job(database_url, job_ids)
        for job_id in job_ids:
            last = events[job_id][-1]
            assert last["type"] == "status", events[job_id]
            assert last["data"]["status"] == "queued" and last["data"]["handed_back"] is True
            assert last["data"]["attempt"] == 1

        # B runs the attempt that finishes; its requests start now, with a quick mock.
        llm.configure(ttft=1.0, tps=200)
        # 8 slots: B's first dequeue (batch = concurrency / 2) takes all four at once.
        worker_b = start_worker({**env, "RAGSERVE_WORKER_CONCURRENCY": "8"})
        procs = (api, worker_a, worker_b)
        ready = wait_worker_ready(worker_b)
        picked = wait_for(
            lambda: len(started(worker_b, ids)) == 4 and started(worker_b, ids),
            10,
            "B to pick up the handed-back jobs",
            procs,
        )
        assert set(picked.values()) == {2}, picked
        delays = [ts(e) - ts(ready) for e in logged(worker_b, "job.started") if e["job_id"] in ids]
        assert max(delays) < 2.5, delays
        jobs = wait_terminal(client, job_ids, 30, procs)

    # max_attempts=1: only because the hand-back refunded attempt 1 could attempt 2 run.
    assert {j["status"] for j in jobs.values()} == {"succeeded"}, jobs
    assert {j["attempts"] for j in jobs.values()} == {2}, jobs
    events = events_by_job(database_url, job_ids)
    for job_id in job_ids:
        done = [e for e in events[job_id] if e["type"] == "done"]
        assert len(done) == 1 and done[0]["attempt"] == 2, events[job_id]
        assert done[0]["data"]["result"] == jobs[job_id]["result"]


# --------------------------------------------------------------------------- 3. fencing


async def test_stale_attempt_is_fenced_out(db: Database) -> None:
    """After a redelivery, every write of the older attempt is refused and changes nothing."""
    store = JobStore(db)
    job_id = await inserted_job(store)

    stale = await store.start_attempt(job_id)
    current = await store.start_attempt(job_id)  # the queue redelivered: attempt 2 holds it
    assert stale is not None and current is not None
    assert (stale.number, current.number) == (1, 2)

    async def snapshot() -> tuple[dict[str, Any], list[tuple[int, int, str]]]:
        async with db.connection() as conn:
            job = await (
                await conn.execute(
                    "SELECT status, attempts, max_attempts, result, error, finished_at, event_seq"
                    " FROM jobs WHERE id = %s",
                    (job_id,),
                )
            ).fetchone()
            events = await (
                await conn.execute(
                    "SELECT seq, attempt, type FROM job_events WHERE job_id = %s ORDER BY seq",
                    (job_id,),
                )
            ).fetchall()
        return job, [(e["seq"], e["attempt"], e["type"]) for e in events]

    before = await snapshot()
    assert before[0]["status"] == "running" and before[0]["attempts"] == 2
    assert await store.append_event(stale, "token", {"text": "zombie"}) is False
    assert await store.succeed(stale, {"answer": "zombie", "sources": []}) is False
    assert await store.fail(stale, {"type": "X", "message": "zombie"}) is False
    assert await store.requeue(stale, {"type": "X", "message": "zombie"}) is False
    assert await store.requeue(stale, None, refund=True) is False
    assert await snapshot() == before

    assert await store.append_event(current, "token", {"text": "live"}) is True
    result = {"answer": "live", "sources": []}
    assert await store.succeed(current, result) is True
    job, events = await snapshot()
    assert (job["status"], job["result"], job["error"]) == ("succeeded", result, None)
    assert job["max_attempts"] == 3
    # Events: queued (attempt 0 row), running 1, running 2, then only attempt 2's.
    assert [(a, t) for _, a, t in events] == [
        (0, "status"),
        (1, "status"),
        (2, "status"),
        (2, "token"),
        (2, "done"),
    ]

    # Once finished, neither attempt can write any more.
    assert await store.append_event(current, "token", {"text": "late"}) is False
    assert await store.fail(current, {"type": "X", "message": "late"}) is False
    assert await store.requeue(current, None) is False
    assert await snapshot() == (job, events)
