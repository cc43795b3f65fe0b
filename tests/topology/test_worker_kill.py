"""A worker SIGKILLed with jobs in flight, behind nginx: every job still succeeds, once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import httpx

from topology.conftest import Cluster
from topology.helpers import ingest, replay_events, submit, wait_for, wait_terminal

JOBS = 12


def test_sigkill_worker_with_jobs_in_flight(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(
        apis=2,
        workers=2,
        # A short heartbeat timeout keeps the test short (the default is 30 s).
        env={"RAGSERVE_HEARTBEAT_TIMEOUT_S": "3", "RAGSERVE_WORKER_CONCURRENCY": "8"},
    )
    victim, survivor = cluster.workers
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        ingest(client, cluster)
        cluster.configure_mock(ttft=2.0, tps=200)  # each job holds its worker ~2 s
        answers = [submit(client, f"[kill {i}] When does Aurora open?") for i in range(JOBS)]
        assert [a.status_code for a in answers] == [202] * JOBS
        job_ids = [a.json()["job_id"] for a in answers]

        def victim_busy() -> set[str]:
            ids = {e["job_id"] for e in victim.log_events("job.started")} & set(job_ids)
            return ids if len(ids) >= 2 else set()

        started = wait_for(victim_busy, 20, "the victim to start jobs", cluster)
        victim.kill()
        in_flight = started - {e["job_id"] for e in victim.log_events("job.succeeded")}
        assert in_flight, "the victim finished its jobs before it was killed"
        killed_at = time.monotonic()
        cluster.configure_mock(ttft=0.05)  # retried attempts finish quickly
        jobs = wait_terminal(client, job_ids, 45, cluster)
        recovered_s = time.monotonic() - killed_at

        assert {j["status"] for j in jobs.values()} == {"succeeded"}, jobs
        # The victim's jobs ran again, on the survivor.
        assert all(jobs[job_id]["attempts"] >= 2 for job_id in in_flight), jobs
        # Exactly once: one terminal event per job in the replayed stream, no error, and one
        # success logged by the live worker (the victim never finished those it held).
        for job_id in job_ids:
            kinds = Counter(e["event"] for e in replay_events(client, job_id))
            assert kinds["done"] == 1 and kinds["error"] == 0, (job_id, kinds)
        succeeded = Counter(
            e["job_id"] for w in (victim, survivor) for e in w.log_events("job.succeeded")
        )
        assert all(succeeded[job_id] == 1 for job_id in job_ids), succeeded
        assert in_flight <= {e["job_id"] for e in survivor.log_events("job.succeeded")}
        print(f"\nvictim held {len(in_flight)} jobs; all {JOBS} done {recovered_s:.1f} s after")
