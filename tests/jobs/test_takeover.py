"""Takeover on the default heartbeat settings: fast after SIGKILL, never of a live slow job.

Real ``ragserve api`` + two ``ragserve worker`` processes; no heartbeat setting is passed, so
the defaults are what is tested. The takeover time is measured from the SIGKILL to the
``job.started`` log line of the new attempt on the surviving worker.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from ragserve.settings import Settings
from support import service_env
from support.workers import (
    events_by_job,
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


TAKEOVER_LIMIT_S = 10.0


def test_default_heartbeat_timeout_is_below_the_takeover_limit() -> None:
    # Entries are retaken after the timeout plus at most one poll (a third of it).
    timeout = Settings().heartbeat_timeout_s
    assert timeout + timeout / 3 < TAKEOVER_LIMIT_S


def test_sigkilled_workers_jobs_run_again_within_10s(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
    start_worker: Callable[..., Proc],
) -> None:
    database_url = new_database_url()
    env = service_env(database_url, llm_base_url=llm.base_url, worker_concurrency=8)
    workers = (start_worker(env), start_worker(env))
    url, api = start_service(env, command="api")
    procs = (api, *workers)
    for worker in workers:
        wait_worker_ready(worker)

    with httpx.Client(base_url=url, timeout=10) as client:
        ingest(client, "kb", procs)
        llm.configure(ttft=6.0, tps=200)
        job_ids = submit(client, "kb", questions("takeover", 6))
        ids = set(job_ids)
        wait_for(
            lambda: sum(len(started(w, ids)) for w in workers) == len(ids),
            20,
            "every job to start",
            procs,
        )
        victim, survivor = sorted(workers, key=lambda w: len(started(w, ids)), reverse=True)
        in_flight = started(victim, ids)
        victim.signal(signal.SIGKILL)
        killed_at = time.time()
        assert victim.wait(10) == -signal.SIGKILL

        def retaken() -> dict[str, float] | None:
            times = {
                e["job_id"]: ts(e) - killed_at
                for e in logged(survivor, "job.started")
                if e["job_id"] in in_flight and e["attempt"] > in_flight[e["job_id"]]
            }
            return times if len(times) == len(in_flight) else None

        takeover = wait_for(retaken, 30, "the killed worker's jobs to be retaken", procs)
        jobs = wait_terminal(client, job_ids, 60, procs)

    print(f"takeover after SIGKILL: {sorted(round(t, 2) for t in takeover.values())} s")
    assert max(takeover.values()) < TAKEOVER_LIMIT_S, takeover
    assert {j["status"] for j in jobs.values()} == {"succeeded"}, jobs
    events = events_by_job(database_url, job_ids)
    for job_id in job_ids:
        assert [e["type"] for e in events[job_id]].count("done") == 1, events[job_id]


def test_slow_job_of_a_live_worker_is_never_taken_over(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
    start_worker: Callable[..., Proc],
) -> None:
    """A ~20 s LLM stream (three heartbeat timeouts) stays with its worker, while another
    worker polls the queue all along and would retake it on a missed heartbeat."""
    database_url = new_database_url()
    env = service_env(database_url, llm_base_url=llm.base_url, worker_concurrency=4)
    workers = (start_worker(env), start_worker(env))
    url, api = start_service(env, command="api")
    procs = (api, *workers)
    for worker in workers:
        wait_worker_ready(worker)

    with httpx.Client(base_url=url, timeout=10) as client:
        ingest(client, "kb", procs)
        llm.configure(ttft=0.05, tps=0.75)  # the ~15-token answer takes ~20 s
        began = time.monotonic()
        (job_id,) = submit(client, "kb", questions("slow", 1))
        (job,) = wait_terminal(client, [job_id], 90, procs).values()
        took = time.monotonic() - began

    print(f"slow job: {took:.1f} s, attempts {job['attempts']}")
    assert took > 3 * Settings().heartbeat_timeout_s, took
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1, job
    assert sum(len(started(w, {job_id})) for w in workers) == 1
