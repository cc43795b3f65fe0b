"""``RAGSERVE_MAX_QUEUED_PER_TENANT`` over HTTP, on an API without workers (jobs stay queued),
listening on 0.0.0.0 with ``RAGSERVE_AUTH=off`` said explicitly (which is allowed)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ragserve.jobs.service import QUEUE_FULL_RETRY_AFTER_S
from support import Proc, free_port, ragserve_command, service_env, wait_http


def test_submissions_beyond_the_tenant_limit_get_429_with_retry_after(
    new_database_url: Callable[[], str], spawn: Callable[..., Proc]
) -> None:
    env = service_env(new_database_url(), auth="off", max_queued_per_tenant=2)
    port = free_port()
    proc = spawn(ragserve_command("api", "--host", "0.0.0.0", "--port", str(port)), env, "api")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/readyz", proc)
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(2):
            response = client.post("/v1/jobs", json={"query": f"question {n}"})
            assert response.status_code == 202, response.text
        # The same question as one in flight shares its job: no new work, not refused.
        assert client.post("/v1/jobs", json={"query": "question 0"}).json()["coalesced"]
        refused = client.post("/v1/jobs", json={"query": "question 2"})
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == str(int(QUEUE_FULL_RETRY_AFTER_S))
        error = refused.json()["error"]
        assert error["type"] == "TenantQueueFull"
        assert "RAGSERVE_MAX_QUEUED_PER_TENANT (2)" in error["message"]
        upload = client.post(
            "/v1/collections/hr/documents", json={"documents": [{"source": "a", "text": "b"}]}
        )
        assert upload.status_code == 429  # ingest jobs count too
        assert len(client.get("/v1/jobs").json()["jobs"]) == 2
        # A cancelled job frees its place.
        oldest = client.get("/v1/jobs").json()["jobs"][-1]["job_id"]
        client.post(f"/v1/jobs/{oldest}/cancel").raise_for_status()
        assert client.post("/v1/jobs", json={"query": "question 2"}).status_code == 202
