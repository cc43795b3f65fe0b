"""Retried POSTs against a real ``ragserve api``: a lost answer never makes a second job.

Between the client and the service sits ``HttpFront`` (tests/support), which forwards the first
tries to the service and then throws the answer away (a reset, a hang-up or a ``504``, as when
a replica dies or a proxy times out after the work was done). The API runs without a worker,
so every job stays where the test put it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragserve.client import ApiClient, RetryPolicy
from support import service_env
from support.http_front import Answer, Forward, HangUp, HttpFront, Reset

FAST = RetryPolicy(deadline_s=20, base_delay_s=0.05, max_delay_s=0.2)


@pytest.fixture
def api_url(
    new_database_url: Callable[[], str], start_service: Callable[..., tuple[str, Any]]
) -> str:
    url, _ = start_service(service_env(new_database_url()), "api")
    return url


@pytest.fixture
def front(api_url: str) -> Iterator[HttpFront]:
    with HttpFront(upstream=api_url).running() as server:
        yield server


def jobs_of(url: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{url}/v1/jobs", params={"limit": 1000}).json()["jobs"])


def test_retried_submissions_and_uploads_make_one_job_each(
    api_url: str, front: HttpFront, tmp_path: Path
) -> None:
    front.plan("POST", "/v1/jobs", Forward(then=Reset()), Forward(then=Answer(504)), Forward())
    route = "/v1/collections/docs/documents"
    front.plan("POST", route, Forward(then=HangUp()), Forward())
    (tmp_path / "office.md").write_text("The office opens at 8am.", encoding="utf-8")
    with ApiClient(front.url, timeout=10, retry=FAST) as client:
        accepted = client.submit("When does the office open?", "docs")
        upload = client.upload_files("docs", [tmp_path / "office.md"])
    upstream = [(a.path, a.status) for a in front.upstream_answers]
    assert upstream == [("/v1/jobs", 202)] * 3 + [(route, 202)] * 2
    lost = [json.loads(a.body) for a in front.upstream_answers if a.body is not None]
    # the first try created the job; the later ones found it by its key
    assert [answer["job_id"] for answer in lost] == [accepted["job_id"]] * 2 + [upload["job_id"]]
    assert len(front.requests("POST", "/v1/jobs")) == 3
    assert len(front.requests("POST", route)) == 2
    jobs = jobs_of(api_url)
    answers = [job["job_id"] for job in jobs if job["kind"] == "answer"]
    ingests = [job["job_id"] for job in jobs if job["kind"] == "ingest"]
    assert (answers, ingests) == ([accepted["job_id"]], [upload["job_id"]])


def test_repeated_cancel_and_retry_after_lost_answers(api_url: str, front: HttpFront) -> None:
    """A repeated cancel answers like the first; a repeated retry finds the job queued again
    (409 from the server), which the client reports as the retry's success."""
    job_id = httpx.post(f"{api_url}/v1/jobs", json={"query": "q?"}).json()["job_id"]
    cancel, retry = f"/v1/jobs/{job_id}/cancel", f"/v1/jobs/{job_id}/retry"
    front.plan("POST", cancel, Forward(then=Reset()), Forward())
    front.plan("POST", retry, Forward(then=HangUp()), Forward())
    with ApiClient(front.url, timeout=10, retry=FAST) as client:
        cancelled = client.cancel(job_id)
        assert cancelled["status"] == "cancelled"
        retried = client.retry(job_id)
    assert (retried["job_id"], retried["status"]) == (job_id, "queued")
    upstream = [(a.method, a.path, a.status, a.body is None) for a in front.upstream_answers]
    assert upstream == [
        ("POST", cancel, 200, False),  # went through, answer lost
        ("POST", cancel, 200, True),  # the repeat: the same cancelled job
        ("POST", retry, 202, False),  # went through (re-queued), answer lost
        ("POST", retry, 409, True),  # the repeat: "job ... is queued"
        ("GET", f"/v1/jobs/{job_id}", 200, True),  # the client checks the job runs again
    ]
    job = httpx.get(f"{api_url}/v1/jobs/{job_id}").json()
    assert (job["status"], job["attempts"]) == ("queued", 0)
    assert len(jobs_of(api_url)) == 1
