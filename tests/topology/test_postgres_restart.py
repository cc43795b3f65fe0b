"""PostgreSQL stopped for ~5 s and started again under steady submissions through nginx.

What the API answers while the database is away is recorded and printed (run with ``-s``),
not yet asserted: answering ``503`` + ``Retry-After`` there is later work (issue 6, item 5).
Asserted: submissions before the outage are accepted; afterwards every process is alive,
retried submissions (same Idempotency-Key) are accepted, and every accepted job reaches a
terminal state: none is lost.
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
class Answer:
    at: float  # seconds since the load started
    what: str  # "submit" (POST /v1/jobs) or "read" (GET /v1/jobs/{id})
    outcome: str  # HTTP status, or the exception's name
    seconds: float
    retry_after: str | None = None
    key: str | None = None  # Idempotency-Key and query of a submission
    query: str | None = None
    job_id: str | None = None


class SteadyLoad:
    """Client threads, each sending one request every ``interval`` s and recording every
    answer (no retries here: we want the raw answers)."""

    def __init__(self, client: httpx.Client, interval: float = 0.1) -> None:
        self.client = client
        self.interval = interval
        self.answers: list[Answer] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def submitter(self, name: str) -> None:
        """``POST /v1/jobs``, each with a new Idempotency-Key."""

        def prepare(n: int) -> Answer:
            query = f"[{name} {n}] When does Aurora open?"
            return Answer(0, "submit", "", 0, key=str(uuid.uuid4()), query=query)

        def send(answer: Answer) -> httpx.Response:
            assert answer.query is not None
            response = submit(self.client, answer.query, answer.key)
            if response.status_code == 202:
                answer.job_id = response.json()["job_id"]
            return response

        self._start(prepare, send)

    def reader(self, job_id: str) -> None:
        """``GET /v1/jobs/{id}``."""
        self._start(
            lambda n: Answer(0, "read", "", 0), lambda _: self.client.get(f"/v1/jobs/{job_id}")
        )

    def _start(
        self, prepare: Callable[[int], Answer], send: Callable[[Answer], httpx.Response]
    ) -> None:
        def loop() -> None:
            n = 0
            while not self._stop.is_set():
                n += 1
                answer = prepare(n)
                start = time.monotonic()
                try:
                    response = send(answer)
                    answer.outcome = str(response.status_code)
                    answer.retry_after = response.headers.get("Retry-After")
                except httpx.HTTPError as exc:
                    answer.outcome = type(exc).__name__
                answer.at, answer.seconds = start - self.t0, time.monotonic() - start
                self.answers.append(answer)
                self._stop.wait(self.interval)

        thread = threading.Thread(target=loop, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def now(self) -> float:
        return time.monotonic() - self.t0


class ProcessExited(AssertionError):
    """An API or worker process exited after the outage."""


@pytest.mark.xfail(
    raises=ProcessExited,
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
        first = submit(client, "When does Aurora open?").json()["job_id"]
        load = SteadyLoad(client)
        for name in ("a", "b", "c"):
            load.submitter(name)
        load.reader(first)
        try:
            time.sleep(2)
            down_at = load.now()
            cluster.restart_postgres("fast", down_s=DOWN_S)
            up_at = load.now()
            time.sleep(5)
        finally:
            load.stop()
        answers = load.answers

        # What clients saw, before / while / after the database was away.
        def phase(a: Answer) -> str:
            return "before" if a.at < down_at else "down" if a.at < up_at + 0.5 else "after"

        seen = {
            (what, p): Counter(a.outcome for a in answers if a.what == what and phase(a) == p)
            for what in ("submit", "read")
            for p in ("before", "down", "after")
        }
        slowest = {w: max(a.seconds for a in answers if a.what == w) for w in ("submit", "read")}
        retry_after = Counter(
            (a.outcome, a.retry_after) for a in answers if a.outcome not in ("200", "202")
        )
        upstream = Counter(
            (e["method"], e["status"], e["upstatus"])
            for e in cluster.nginx.access_log()
            if e["status"] not in ("200", "202")
        )
        print(f"\ndatabase down from {down_at:.1f} s to {up_at:.1f} s")
        for (what, p), counts in seen.items():
            print(f"  {what:6} {p:6} {dict(counts)}")
        print(f"  slowest answer (s): {slowest}; (status, Retry-After): {dict(retry_after)}")
        print(f"  nginx (method, status, upstream statuses): {dict(upstream)}")

        submissions = [a for a in answers if a.what == "submit"]
        assert submissions and {a.outcome for a in submissions if a.at < down_at} == {"202"}

        # A client retries what failed with the same key (the documented behaviour): once
        # the database is back, every such submission is accepted.
        accepted = {a.key: a.job_id for a in submissions if a.job_id}
        for a in submissions:
            if a.job_id is None:

                def retried(answer: Answer = a) -> str | None:
                    response = submit(client, answer.query or "", answer.key)
                    return response.json()["job_id"] if response.status_code == 202 else None

                accepted[a.key] = wait_for(retried, 30, f"retry of {a.key} accepted", cluster)
        assert len(set(accepted.values())) == len(submissions)
        accepted["first"] = first

        # None lost: every accepted job ends, while every process stays alive.
        def settled() -> dict[str, dict[str, Any]] | None:
            dead = [c.name for c in [*cluster.apis, *cluster.workers] if not c.alive]
            if dead:
                raise ProcessExited(f"exited after the outage: {dead}\n{cluster_logs(cluster)}")
            jobs = {job_id: client.get(f"/v1/jobs/{job_id}").json() for job_id in accepted.values()}
            return jobs if all(j.get("status") in TERMINAL for j in jobs.values()) else None

        jobs = wait_for(settled, 90, "all accepted jobs terminal", cluster)
        final = Counter(j["status"] for j in jobs.values())
        print(f"{len(jobs)} accepted jobs, final status: {final}")
