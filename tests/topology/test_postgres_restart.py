"""PostgreSQL stopped for ~5 s and started again under steady submissions through nginx.

What the API answers while the database is away is recorded and printed (run with ``-s``),
not yet asserted: answering ``503`` + ``Retry-After`` there is later work (issue 6, item 5).
Asserted: afterwards every process is alive, retried submissions (same Idempotency-Key) are
accepted, and every accepted job reaches a terminal state: none is lost.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from topology.conftest import Cluster
from topology.helpers import TERMINAL, cluster_logs, ingest, submit, wait_for

DOWN_S = 5.0


@dataclass
class Attempt:
    at: float  # seconds since the load started
    key: str
    query: str
    outcome: str  # HTTP status, or the exception's name
    seconds: float
    retry_after: str | None = None
    job_id: str | None = None


class SteadyLoad:
    """A thread submitting a job every ``interval`` s, each with a new Idempotency-Key,
    recording every answer (no retries here: we want the raw answers)."""

    def __init__(self, client: httpx.Client, interval: float = 0.1) -> None:
        self.client = client
        self.interval = interval
        self.attempts: list[Attempt] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            key, query = str(uuid.uuid4()), f"[pg {n}] When does Aurora open?"
            start = time.monotonic()
            try:
                response = submit(self.client, query, key)
                attempt = Attempt(
                    start - self.t0,
                    key,
                    query,
                    str(response.status_code),
                    time.monotonic() - start,
                    response.headers.get("Retry-After"),
                    response.json().get("job_id") if response.status_code == 202 else None,
                )
            except httpx.HTTPError as exc:
                attempt = Attempt(
                    start - self.t0, key, query, type(exc).__name__, time.monotonic() - start
                )
            self.attempts.append(attempt)
            self._stop.wait(self.interval)

    def now(self) -> float:
        return time.monotonic() - self.t0


@pytest.mark.xfail(
    strict=True,
    reason="workers exit when PostgreSQL restarts (worker.crashed: asyncpg 'connection is "
    "closed' from pgqueuer's connection); reconnecting is issue 6 item 5. Strict: remove this "
    "mark once that lands.",
)
def test_postgres_restart_under_load(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(apis=2, workers=2, env={"RAGSERVE_HEARTBEAT_TIMEOUT_S": "5"})
    assert cluster.postgres is not None
    # A generous client timeout: a hang shows up as a long `seconds`, not as a test error.
    with httpx.Client(base_url=cluster.url, timeout=15) as client:
        ingest(client, cluster)
        cluster.configure_mock(ttft=0.5, tps=100)  # jobs are running when the server stops
        with SteadyLoad(client) as load:
            time.sleep(2)
            down_at = load.now()
            cluster.restart_postgres("fast", down_s=DOWN_S)
            up_at = load.now()
            time.sleep(5)
        attempts = load.attempts

        # What clients saw, before / while / after the database was away.
        def phase(a: Attempt) -> str:
            return "before" if a.at < down_at else "down" if a.at < up_at + 0.5 else "after"

        seen = {
            p: Counter(a.outcome for a in attempts if phase(a) == p)
            for p in ("before", "down", "after")
        }
        slowest = max(a.seconds for a in attempts)
        retry_after = Counter(a.retry_after for a in attempts if a.outcome != "202")
        upstream = Counter(
            e["upstatus"] for e in cluster.nginx.access_log() if e["status"] != "202"
        )
        print(
            f"\ndatabase down {down_at:.1f}-{up_at:.1f} s; submissions by phase: {seen}; "
            f"slowest answer {slowest:.2f} s; Retry-After on non-202: {retry_after}; "
            f"nginx upstream statuses of non-202 answers: {upstream}"
        )

        # A client retries what failed with the same key (the documented behaviour): once
        # the database is back, every such submission is accepted.
        accepted = {a.key: a.job_id for a in attempts if a.job_id}
        for a in attempts:
            if a.job_id is None:

                def retried(key: str = a.key, query: str = a.query) -> str | None:
                    response = submit(client, query, key)
                    return response.json()["job_id"] if response.status_code == 202 else None

                accepted[a.key] = wait_for(retried, 30, f"retry of {a.key} accepted", cluster)
        assert seen["before"] and set(seen["before"]) == {"202"}, seen
        assert len(set(accepted.values())) == len(attempts)

        # None lost: every accepted job ends, while every process stays alive.
        def settled() -> dict[str, dict[str, Any]] | None:
            dead = [c.name for c in [*cluster.apis, *cluster.workers] if not c.alive]
            assert not dead, f"exited after the outage: {dead}\n{cluster_logs(cluster)}"
            jobs = {job_id: client.get(f"/v1/jobs/{job_id}").json() for job_id in accepted.values()}
            return jobs if all(j.get("status") in TERMINAL for j in jobs.values()) else None

        jobs = wait_for(settled, 90, "all accepted jobs terminal", cluster)
        final = Counter(j["status"] for j in jobs.values())
        print(f"{len(jobs)} accepted jobs, final status: {final}")
