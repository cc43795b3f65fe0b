"""One ``ragserve serve`` for the OpenAI-door tests (answering with the mock LLM), holding two
collections: ``handbook`` (three one-line documents) and ``faq`` (one)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from support import MockLLM, Proc, running_service, service_env

HANDBOOK = [
    {"source": "leave.md", "text": "Full-time employees get 23 days of paid annual leave."},
    {"source": "wifi.md", "text": "The guest Wi-Fi network is called Lumen-Guest."},
    {"source": "parking.md", "text": "Parking is free for employees on level B2."},
]
FAQ = [{"source": "canteen.md", "text": "The canteen opens at 11:30 on weekdays."}]


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


@pytest.fixture(scope="package")
def served(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    database_url = new_database_url()
    env = service_env(database_url, llm_base_url=mock_llm.base_url, llm_model="mock")
    mock_llm.configure(ttft=0.05, tps=200, error_rate=0.0)
    with (
        running_service(env, tmp_path_factory.mktemp("openai")) as (url, proc),
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        ingests = [
            http.post(f"/v1/collections/{name}/documents", json={"documents": docs}).json()
            for name, docs in (("handbook", HANDBOOK), ("faq", FAQ))
        ]
        for accepted in ingests:
            assert wait_job(http, accepted["job_id"])["status"] == "succeeded"
        yield Served(url, proc, database_url, http)


def wait_job(http: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once it is over."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} not over in {timeout} s: {job}"
        time.sleep(0.05)
