"""One ``ragserve serve`` for the OpenAI-door tests (answering with the mock LLM), holding two
collections: ``handbook`` (three one-line documents) and ``faq`` (one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from served import Served, wait_job

from support import MockLLM, running_service, service_env

HANDBOOK = [
    {"source": "leave.md", "text": "Full-time employees get 23 days of paid annual leave."},
    {"source": "wifi.md", "text": "The guest Wi-Fi network is called Lumen-Guest."},
    {"source": "parking.md", "text": "Parking is free for employees on level B2."},
]
FAQ = [{"source": "canteen.md", "text": "The canteen opens at 11:30 on weekdays."}]


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
