"""A replica that shuts down (SIGTERM) while OpenAI clients wait: they get an OpenAI error
naming the job (streamed: an error chunk, then [DONE]; not streamed: 503 with Retry-After),
never a cut connection; the jobs stay in the queue for another replica."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support import MockLLM, running_service, service_env, start_mock_llm


@pytest.fixture(scope="module")
def slow_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLM]:
    proc, mock = start_mock_llm(tmp_path_factory.mktemp("slow-llm") / "mock.log", "--ttft", "8")
    yield mock
    proc.stop()


def test_drain_ends_waits_with_openai_errors(
    new_database_url: Callable[[], str], slow_llm: MockLLM, tmp_path: Path
) -> None:
    env = service_env(
        new_database_url(), llm_base_url=slow_llm.base_url, llm_model="mock", sse_drain_s=0.5
    )
    docs = {"documents": [{"source": "a.md", "text": "The office opens at nine."}]}
    with (
        running_service(env, tmp_path) as (url, proc),
        httpx.Client(base_url=url, timeout=30) as http,
        ThreadPoolExecutor(1) as pool,
    ):
        ingest = http.post("/v1/collections/kb/documents", json=docs).json()["job_id"]
        while http.get(f"/v1/jobs/{ingest}").json()["status"] != "succeeded":
            time.sleep(0.05)
        waiting = pool.submit(
            http.post,
            "/v1/chat/completions",
            json={"model": "kb", "messages": [{"role": "user", "content": "When does it open?"}]},
        )
        body = {"model": "kb", "stream": True, "messages": [{"role": "user", "content": "Hours?"}]}
        with http.stream("POST", "/v1/chat/completions", json=body) as stream:
            lines = stream.iter_lines()
            assert json.loads(next(lines).removeprefix("data: "))["choices"][0]["delta"]["role"]
            proc.signal(signal.SIGTERM)
            rest = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
        assert rest[-1] == "[DONE]"
        error = json.loads(rest[-2])["error"]
        assert error["code"] == "server_shutting_down"
        assert f"/v1/jobs/{stream.headers['X-Ragserve-Job-Id']}" in error["message"]
        answer = waiting.result(timeout=30)
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert answer.json()["error"]["code"] == "server_shutting_down"
        assert answer.headers["X-Ragserve-Job-Id"] in answer.json()["error"]["message"]
        assert proc.wait(30) == 0
