"""Metrics: database facts read at scrape time, and a real ``ragserve serve``'s ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ragserve import __version__
from ragserve.db.pool import Database
from ragserve.jobs import queue
from ragserve.jobs.monitoring import read_facts
from ragserve.jobs.presence import WorkerPresence
from ragserve.jobs.store import JobStore, NewJob, WorkerIdentity
from support import MockLLM, running_service, service_env

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls), _ in samples.items() if n == name and label in dict(ls)}


# --------------------------------------------------------------------------- database facts


async def enqueue_answers(db: Database, n: int) -> list[str]:
    store = JobStore(db)
    ids = []
    async with db.transaction() as conn:
        for i in range(n):
            query = f"question {uuid.uuid4()} {i}?"
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
            ids.append(str(row["id"]))
    return ids


async def test_queue_facts_come_from_the_database(db: Database) -> None:
    async with db.connection() as conn:
        empty = await read_facts(conn)
    assert {q: (f.depth, f.running) for q, f in empty.queues.items()} == {
        "answer": (0, 0),
        "ingest": (0, 0),
    }
    assert empty.queues["answer"].oldest_s == 0 and empty.workers == 0

    await enqueue_answers(db, 5)
    await asyncio.sleep(0.3)
    async with db.connection() as conn:
        facts = await read_facts(conn)
    assert facts.queues["answer"].depth == 5
    assert 0.3 <= facts.queues["answer"].oldest_s < 30
    assert facts.queues["ingest"].depth == 0


async def test_live_workers_are_those_whose_presence_is_fresh(db: Database) -> None:
    stable = WorkerPresence(db, WorkerIdentity(str(uuid.uuid4()), "v1"), ["answer"], 0.2)
    canary = WorkerPresence(db, WorkerIdentity(str(uuid.uuid4()), "v2"), ["answer"], 30)
    await stable.beat(running=1)
    await canary.beat(running=0)
    async with db.connection() as conn:
        facts = await read_facts(conn)
    assert facts.workers == 2 and facts.workers_by_version == {"v1": 1, "v2": 1}

    await asyncio.sleep(0.7)  # three missed beats of 0.2 s: the first one is gone
    async with db.connection() as conn:
        assert (await read_facts(conn)).workers_by_version == {"v2": 1}
    await canary.leave()
    async with db.connection() as conn:
        assert (await read_facts(conn)).workers == 0


# --------------------------------------------------------------------------- /metrics of serve

DOCS = [
    {"source": "leave.md", "text": "Full-time employees get 23 days of paid annual leave."},
    {"source": "wifi.md", "text": "The guest Wi-Fi network is called Lumen-Guest."},
]


@pytest.fixture(scope="module")
def served(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    env = service_env(
        new_database_url(),
        llm_base_url=mock_llm.base_url,
        llm_model="mock",
        max_attempts=2,
        retry_base_s=0.05,
        cache_ttl_s=0,
    )
    with (
        running_service(env, tmp_path_factory.mktemp("serve")) as (url, _),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def wait_done(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} not done in {timeout} s: {job}"
        time.sleep(0.05)


def events_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """The job's events, from its event stream (which ends after the terminal event)."""
    events = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        kind = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append({"event": kind, "data": json.loads(line.split(":", 1)[1])})
    return events


def test_serve_reports_jobs_http_and_workers(served: httpx.Client, mock_llm: MockLLM) -> None:
    client = served
    mock_llm.configure(ttft=0.05, tps=200, error_rate=0.0)
    ingest = client.post("/v1/collections/kb/documents", json={"documents": DOCS}).json()
    assert wait_done(client, ingest["job_id"])["status"] == "succeeded"

    ok = client.post("/v1/jobs", json={"query": "How many days of leave?", "collection": "kb"})
    job = wait_done(client, ok.json()["job_id"])
    assert job["status"] == "succeeded"
    version = job["version"]
    assert re.fullmatch(re.escape(__version__) + r"\+[0-9a-f]{8}", version), job

    mock_llm.configure(error_rate=1.0, error_status=503)
    try:
        bad = client.post("/v1/jobs", json={"query": "What is the Wi-Fi?", "collection": "kb"})
        failed = wait_done(client, bad.json()["job_id"])
    finally:
        mock_llm.configure(error_rate=0.0)
    assert failed["status"] == "failed" and failed["attempts"] == 2 and failed["version"] == version
    running = [e["data"] for e in events_of(client, failed["job_id"]) if e["event"] == "status"]
    assert [(e["attempt"], e.get("version")) for e in running if e["status"] == "running"] == [
        (1, version),
        (2, version),
    ]
    assert client.get("/no/such/path").status_code == 404

    samples = parse(client.get("/metrics").text)

    attempts = "ragserve_job_attempts_total"
    assert value(samples, attempts, kind="ingest", outcome="succeeded", version=version) == 1
    assert value(samples, attempts, kind="answer", outcome="succeeded", version=version) == 1
    assert value(samples, attempts, kind="answer", outcome="retried", version=version) == 1
    assert value(samples, attempts, kind="answer", outcome="failed", version=version) == 1
    duration = "ragserve_job_duration_seconds_count"
    assert value(samples, duration, kind="answer", status="succeeded", version=version) == 1
    assert value(samples, duration, kind="answer", status="retried") == 1
    assert value(samples, "ragserve_job_queue_wait_seconds_count", kind="answer") == 3
    # Only the answer that succeeded ever got a token from the model.
    assert value(samples, "ragserve_llm_first_token_seconds_count", version=version) == 1
    first_token_s = value(samples, "ragserve_llm_first_token_seconds_sum", version=version)
    assert 0.04 <= first_token_s < 5  # the mock's time to first token is 0.05 s

    http = "ragserve_http_request_duration_seconds_count"
    assert value(samples, http, route="/v1/jobs/{job_id}", method="GET", status="200") >= 2
    assert value(samples, http, route="/v1/jobs", method="POST", status="202") == 2
    assert value(samples, http, route="unmatched", method="GET", status="404") == 1
    routes = label_values(samples, http, "route")
    assert not any(failed["job_id"] in route for route in routes), routes

    assert value(samples, "ragserve_workers") == 1
    assert value(samples, "ragserve_worker_versions", version=version) == 1
    assert value(samples, "ragserve_queue_depth", queue="answer") == 0
    assert value(samples, "ragserve_queue_oldest_seconds", queue="ingest") == 0
