"""An LLM outage under load, with the circuit breaker: jobs are parked, not dead-lettered.

A real ``ragserve serve`` (API + worker in one process) against the session's mock LLM, which
answers every request with HTTP 503 for ``OUTAGE_S`` and then recovers. Short breaker
settings keep the test under a minute.

Without the breaker each job would spend its ``max_attempts`` on the outage (one LLM call each,
backoff of a fraction of a second) and be dead-lettered within a second or two: 20 jobs x 3 =
60 calls, 20 failures. With it, the calls during the outage are the few that trip the circuit
(at most what is in flight when it opens) plus one probe per open period.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from support import service_env
from support.workers import (
    ingest,
    questions,
    submit,
    wait_for,
    wait_terminal,
)

if TYPE_CHECKING:
    from support import MockLLM, Proc


JOBS = 20
OUTAGE_S = 20.0
CONCURRENCY = 8
FAILURES = 3
OPEN_S = 1.0
MAX_OPEN_S = 4.0
MAX_ATTEMPTS = 3


def circuit_metrics(client: httpx.Client) -> dict[str, float]:
    """``ragserve_circuit_*`` samples of the LLM's circuit, by sample name."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name.startswith("ragserve_circuit")
        for sample in family.samples
        if sample.labels.get("provider") == "llm" and not sample.name.endswith("_created")
    }


def spent_attempts(database_url: str, job_ids: list[str]) -> dict[str, Counter[str]]:
    """Outcomes of each job's attempts (a parked attempt is refunded: ``handed_back``)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT job_id::text, coalesce(outcome, 'none') FROM job_attempts"
            " WHERE job_id = ANY(%s::uuid[])",
            (job_ids,),
        ).fetchall()
    outcomes: dict[str, Counter[str]] = {job_id: Counter() for job_id in job_ids}
    for job_id, outcome in rows:
        outcomes[job_id][outcome] += 1
    return outcomes


def test_llm_outage_parks_jobs_and_all_succeed_after_recovery(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
) -> None:
    database_url = new_database_url()
    env = service_env(
        database_url,
        llm_base_url=llm.base_url,
        worker_concurrency=CONCURRENCY,
        max_attempts=MAX_ATTEMPTS,
        retry_base_s=0.2,
        breaker_failures=FAILURES,
        breaker_open_s=OPEN_S,
        breaker_max_open_s=MAX_OPEN_S,
    )
    url, service = start_service(env)
    procs = (service,)
    with httpx.Client(base_url=url, timeout=10) as client:
        ingest(client, "kb", procs)  # local embeddings: the LLM is not involved
        assert client.get("/readyz").json()["circuits"]["llm"]["state"] == "closed"

        llm.configure(error_rate=1.0)
        llm.reset_stats()
        outage_began = time.monotonic()
        job_ids = submit(client, "kb", questions("outage", JOBS))

        def circuit_open() -> dict[str, Any] | None:
            readiness = client.get("/readyz")
            body: dict[str, Any] = readiness.json()
            state = body["circuits"]["llm"]["state"]
            return body if state in ("open", "half_open") else None

        during = wait_for(circuit_open, 10, "the LLM circuit to open", procs)
        # An open circuit is reported, but the process stays ready: it parks jobs.
        assert client.get("/readyz").status_code == 200, during
        assert circuit_metrics(client)["ragserve_circuit_opened_total"] >= 1

        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_began)))
        outage_calls = int(llm.stats()["requests_total"])
        during_statuses = {j["status"] for j in snapshot(client, job_ids)}
        llm.configure(error_rate=0.0)
        recovered = time.monotonic()

        jobs = wait_terminal(client, job_ids, 60, procs)
        settle_s = time.monotonic() - recovered
        after = circuit_metrics(client)
        circuits = client.get("/readyz").json()["circuits"]

    # Nobody was dead-lettered during the outage, and everybody succeeded after it.
    assert "failed" not in during_statuses, during_statuses
    assert {jobs[j]["status"] for j in job_ids} == {"succeeded"}, jobs
    for job_id, outcomes in spent_attempts(database_url, job_ids).items():
        # Attempts that failed for real (not parked) stay within the job's budget.
        assert outcomes["retried"] < MAX_ATTEMPTS, (job_id, outcomes)
        assert outcomes["failed"] == 0 and outcomes["succeeded"] == 1, (job_id, outcomes)
    # Bounded: what was in flight when the circuit tripped, then one probe per open period
    # (periods of 1, 2, 4, 4 ... s; counted as if every period were the shortest).
    bound = CONCURRENCY + FAILURES + int(OUTAGE_S / OPEN_S) + 1
    assert outage_calls <= bound, (outage_calls, bound)
    assert after["ragserve_circuit_state"] == 0, after  # closed again
    assert circuits["llm"]["state"] == "closed", circuits
    print(
        f"\nLLM calls during a {OUTAGE_S:.0f} s outage with {JOBS} jobs: {outage_calls}"
        f" (bound {bound}; without the breaker {JOBS * MAX_ATTEMPTS} and {JOBS} dead letters);"
        f" circuit opened {after['ragserve_circuit_opened_total']:.0f} times;"
        f" all {JOBS} jobs succeeded {settle_s:.1f} s after recovery"
    )


def snapshot(client: httpx.Client, job_ids: list[str]) -> list[dict[str, Any]]:
    """The jobs as they are now."""
    return [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
