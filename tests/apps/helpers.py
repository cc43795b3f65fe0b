"""Helpers of the apps tests: submitting app jobs, waiting for them, reading their events."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from support import ROOT

APPS_DIR = ROOT / "tests" / "apps"
EXAMPLES_DIR = ROOT / "examples"
TERMINAL = {"succeeded", "failed", "cancelled"}


def apps_env(apps: dict[str, str], **extra: str) -> dict[str, str]:
    """``RAGSERVE_APPS`` for ``apps`` (name -> module:attribute), with the sample apps and the
    examples importable."""
    return {
        "RAGSERVE_APPS": ";".join(f"{name}={target}" for name, target in apps.items()),
        "PYTHONPATH": f"{APPS_DIR}:{EXAMPLES_DIR}",
        **extra,
    }


def submit(client: httpx.Client, app: str, value: Any, **body: Any) -> str:
    response = client.post(f"/v1/apps/{app}/jobs", json={"input": value, **body})
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == response.json()["status_url"]
    job_id: str = response.json()["job_id"]
    return job_id


def wait_job(
    client: httpx.Client, job_id: str, timeout: float = 30, until: set[str] = TERMINAL
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout}s: {job}"
        time.sleep(0.05)


def events(client: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a finished job, as its SSE stream delivers them."""
    found: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((kind, json.loads(line.removeprefix("data: "))))
    return found
