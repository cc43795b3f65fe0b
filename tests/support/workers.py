"""Helpers of the tests that run real ``ragserve api`` / ``worker`` processes and read their logs.

Processes log one JSON line per event (``job.started`` with ``job_id`` and ``attempt``, ...),
which tells which process ran what. Every wait is bounded and fails with the processes' logs.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from support.processes import Proc

DOC = (
    "The Aurora office opens at 8 am and closes at 6 pm on weekdays. "
    "Employees may work remotely up to two days a week after their manager agrees. "
    "Travel expenses are reimbursed within ten working days of an approved claim."
)
TERMINAL = {"succeeded", "failed", "cancelled"}


def log_entries(proc: Proc) -> list[dict[str, Any]]:
    """The process's JSON log lines (other output, e.g. warnings, is skipped)."""
    entries = []
    for line in proc.log().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):  # a line still being written
                entries.append(json.loads(line))
    return entries


def logged(proc: Proc, event: str) -> list[dict[str, Any]]:
    return [e for e in log_entries(proc) if e.get("event") == event]


def ts(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["ts"]).timestamp()


def started(proc: Proc, job_ids: set[str]) -> dict[str, int]:
    """job id -> attempt number, for the jobs of ``job_ids`` this process started."""
    return {
        e["job_id"]: e["attempt"] for e in logged(proc, "job.started") if e["job_id"] in job_ids
    }


def wait_for(
    check: Callable[[], Any], timeout: float, what: str, procs: tuple[Proc, ...] = ()
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.log_path.name}\n{p.log()[-4000:]}" for p in procs)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(0.05)


def wait_worker_ready(proc: Proc, timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        assert proc.popen.poll() is None, f"worker exited early:\n{proc.log()[-4000:]}"
        entries = logged(proc, "worker.started")
        return entries[0] if entries else None

    return wait_for(ready, timeout, f"{proc.log_path.name} to start", (proc,))


def get_jobs(client: httpx.Client, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    jobs = {}
    for job_id in job_ids:
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        jobs[job_id] = response.json()
    return jobs


def wait_terminal(
    client: httpx.Client, job_ids: list[str], timeout: float, procs: tuple[Proc, ...]
) -> dict[str, dict[str, Any]]:
    def all_done() -> dict[str, dict[str, Any]] | None:
        jobs = get_jobs(client, job_ids)
        return jobs if all(j["status"] in TERMINAL for j in jobs.values()) else None

    return wait_for(all_done, timeout, "all jobs to finish", procs)


def events_by_job(database_url: str, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Stored events of each job, in order (read straight from the table)."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT job_id::text, seq, attempt, type, data FROM job_events"
            " WHERE job_id = ANY(%s::uuid[]) ORDER BY job_id, seq",
            (job_ids,),
        ).fetchall()
    events: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
    for row in rows:
        events[row["job_id"]].append(row)
    return events


def ingest(client: httpx.Client, collection: str, procs: tuple[Proc, ...]) -> None:
    response = client.post(
        f"/v1/collections/{collection}/documents",
        json={"documents": [{"text": DOC, "source": "aurora.txt", "metadata": {}}]},
    )
    assert response.status_code == 202, response.text
    job = wait_terminal(client, [response.json()["job_id"]], 60, procs)
    assert next(iter(job.values()))["status"] == "succeeded", job


def submit(client: httpx.Client, collection: str, questions: list[str]) -> list[str]:
    ids = []
    for question in questions:
        response = client.post("/v1/jobs", json={"query": question, "collection": collection})
        assert response.status_code == 202, response.text
        body = response.json()
        assert not body["cached"] and not body["coalesced"], body
        ids.append(body["job_id"])
    assert len(set(ids)) == len(ids)
    return ids


def questions(tag: str, n: int) -> list[str]:
    topics = [
        "office hours",
        "remote work",
        "travel expenses",
        "weekday opening",
        "manager approval",
        "reimbursement time",
        "closing time",
        "working days",
    ]
    return [
        f"[{tag} {i}] What does the policy say about {topics[i % len(topics)]}?" for i in range(n)
    ]
