"""The service the OpenAI-door tests share (``served`` in conftest.py), and a job waiter.

Its own module, not conftest.py: several test folders have a conftest.py, and ``from conftest
import`` finds whichever one pytest imported last when folders are collected together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from support import Proc


@dataclass(frozen=True)
class Served:
    url: str
    proc: Proc
    database_url: str
    http: httpx.Client

    @property
    def openai_base(self) -> str:
        """What an OpenAI client takes as its base URL."""
        return f"{self.url}/v1"

    def wait_job(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        return wait_job(self.http, job_id, timeout)


def wait_job(http: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once it is over."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} not over in {timeout} s: {job}"
        time.sleep(0.05)
