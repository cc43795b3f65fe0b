"""Helpers of the topology tests: submit, wait, read event streams (through nginx)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from cluster import Cluster  # bench/, on sys.path through conftest.py

TERMINAL = {"succeeded", "failed", "cancelled"}
# The first sentence is what the mock LLM answers with, one word per token: long enough that
# a stream at a few tokens per second is visibly incremental.
DOC = (
    "The Aurora office opens at eight in the morning and closes at six in the evening on "
    "every weekday except public holidays, when the building stays locked and the guards on "
    "duty let in only staff with a signed permit from facilities. "
    "Employees may work remotely up to two days a week after their manager agrees."
)
COLLECTION = "handbook"


def cluster_logs(cluster: Cluster, chars: int = 2500) -> str:
    """The tail of every process's log, for assertion messages."""
    parts = [
        f"--- {c.log_path.name}\n{c.log()[-chars:]}" for c in [*cluster.apis, *cluster.workers]
    ]
    parts.append(f"--- nginx error.log\n{cluster.nginx.error_log()[-chars:]}")
    if cluster.postgres is not None:
        parts.append(f"--- postgres\n{cluster.postgres.tail(chars)}")
    return "\n".join(parts)


def wait_for(check: Callable[[], Any], timeout: float, what: str, cluster: Cluster) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{cluster_logs(cluster)}")
        time.sleep(0.1)


def submit(client: httpx.Client, query: str, key: str | None = None) -> httpx.Response:
    """``POST /v1/jobs`` with an ``Idempotency-Key`` (a new one unless given)."""
    return client.post(
        "/v1/jobs",
        json={"query": query, "collection": COLLECTION},
        headers={"Idempotency-Key": key or str(uuid.uuid4())},
    )


def ingest(client: httpx.Client, cluster: Cluster) -> None:
    response = client.post(
        f"/v1/collections/{COLLECTION}/documents",
        json={"documents": [{"text": DOC, "source": "aurora.txt", "metadata": {}}]},
    )
    assert response.status_code == 202, response.text
    jobs = wait_terminal(client, [response.json()["job_id"]], 60, cluster)
    assert next(iter(jobs.values()))["status"] == "succeeded", jobs


def wait_terminal(
    client: httpx.Client, job_ids: list[str], timeout: float, cluster: Cluster
) -> dict[str, dict[str, Any]]:
    """Every job, once all of them are terminal (read through the load balancer)."""

    def all_done() -> dict[str, dict[str, Any]] | None:
        jobs = {}
        for job_id in job_ids:
            response = client.get(f"/v1/jobs/{job_id}")
            if response.status_code != 200:
                return None
            jobs[job_id] = response.json()
        return jobs if all(j["status"] in TERMINAL for j in jobs.values()) else None

    result: dict[str, dict[str, Any]] = wait_for(all_done, timeout, "all jobs terminal", cluster)
    return result


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parsed events of an open ``text/event-stream`` response, as they arrive."""
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if current:
                yield current
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = json.loads(value) if name == "data" else value


def replay_events(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """All stored events of a (terminal) job: ``GET /v1/jobs/{id}/events`` from the start."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200, response.read()
        return list(sse_events(response))
