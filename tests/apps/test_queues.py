"""Queues per app and per model class: real ``ragserve api`` + ``ragserve worker --queue``
processes on one database, two mock LLMs (a quick one and a slow one).

Two model classes of the built-in pipeline are declared without code
(``rag-small=ragserve:rag``, ``rag-large=ragserve:rag``); ``rag-large`` talks to the slow mock
through ``RAGSERVE_APP_RAG_LARGE_LLM_BASE_URL``. Each class has its own worker process.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from helpers import apps_env, submit, wait_job

from support import (
    MockLLM,
    Proc,
    child_env,
    ragserve_command,
    running_service,
    service_env,
    start_mock_llm,
)

APPS = {
    "rag-small": "ragserve:rag",
    "rag-large": "ragserve:rag",
    "slowchat": "prototype_chain:chain",
}
SLOW_TTFT_S = 3.0
DOC = "The Aurora office opens at 8 am. Travel claims are paid within ten days."


@pytest.fixture(scope="module")
def slow_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLM]:
    log = tmp_path_factory.mktemp("slow-llm") / "mock.log"
    proc, mock = start_mock_llm(log, "--ttft", str(SLOW_TTFT_S), "--tps", "200")
    yield mock
    proc.stop()


@pytest.fixture(scope="module")
def cluster(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    slow_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    logs = tmp_path_factory.mktemp("queues")
    env = {
        **service_env(new_database_url(), llm_base_url=mock_llm.base_url, retry_base_s=0.05),
        **apps_env(
            APPS,
            OPENAI_BASE_URL=slow_llm.base_url,
            OPENAI_API_KEY="sk-test",
            RAGSERVE_APP_RAG_LARGE_LLM_BASE_URL=slow_llm.base_url,
            RAGSERVE_APP_RAG_LARGE_LLM_MODEL="large-model",
        ),
    }
    # The small class's worker also serves the ingest queue (the one upload) and, with a
    # spare worker, the slowchat app (the SIGKILL test): worker starts are the costly part.
    queues = {
        "rag-small": ("rag-small", "ingest", "slowchat"),
        "rag-large": ("rag-large",),
        "spare": ("slowchat",),
    }
    workers = {
        name: Proc(
            ragserve_command("worker", *(f"--queue={queue}" for queue in queues[name])),
            {**child_env(env), "RAGSERVE_WORKER_CONCURRENCY": str(concurrency)},
            logs / f"worker-{name}.log",
        )
        for name, concurrency in (("rag-small", 4), ("rag-large", 2), ("spare", 2))
    }
    try:
        with (
            running_service(env, logs, command="api") as (url, _),
            httpx.Client(base_url=url, timeout=10) as client,
        ):
            for worker in workers.values():
                _wait(lambda w=worker: _logged(w, "worker.started"), 60, "a worker to start")
            yield client, {"env": env, "workers": workers, "logs": logs}
    finally:
        for worker in workers.values():
            worker.stop()


def _logged(proc: Proc, event: str) -> list[dict[str, Any]]:
    entries = []
    for line in proc.log().splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return [e for e in entries if e.get("event") == event]


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def _ask(client: httpx.Client, app: str, query: str) -> str:
    return submit(client, app, {"query": query, "collection": "kb"})


def test_a_flood_on_one_queue_does_not_delay_another(
    cluster: tuple[httpx.Client, dict[str, Any]], mock_llm: MockLLM, slow_llm: MockLLM
) -> None:
    client, parts = cluster
    documents = {"documents": [{"text": DOC, "source": "office.md"}]}
    upload = client.post("/v1/collections/kb/documents", json=documents)
    assert wait_job(client, upload.json()["job_id"], 60)["status"] == "succeeded"

    slow_llm.reset_stats()
    mock_llm.reset_stats()
    flood = [_ask(client, "rag-large", f"When does the office open? (large {n})") for n in range(8)]
    _wait(lambda: slow_llm.stats()["in_flight"] == 2, 20, "the large worker to be busy")
    began = time.monotonic()
    quick = [_ask(client, "rag-small", f"When does the office open? (small {n})") for n in range(4)]
    done = [wait_job(client, job_id, 20) for job_id in quick]
    took = time.monotonic() - began
    large_waiting = [j for j in flood if client.get(f"/v1/jobs/{j}").json()["status"] == "queued"]
    metrics = client.get("/metrics").text

    assert {j["status"] for j in done} == {"succeeded"}, done
    assert all("8 am" in j["result"]["output"]["answer"] for j in done), done
    # Behind the flood on one queue they would wait for 8 slow answers, 2 at a time: 12 s.
    assert took < 2 * SLOW_TTFT_S, f"quick jobs took {took:.1f}s behind the flood"
    assert len(large_waiting) >= 2, large_waiting  # the flood was still queued meanwhile
    assert 'ragserve_queue_depth{queue="rag-large"}' in metrics
    assert 'ragserve_queue_depth{queue="rag-small"} 0.0' in metrics
    # Each class used its own model endpoint (per-app RAGSERVE_APP_<NAME>_LLM_*).
    assert mock_llm.stats()["requests_total"] == len(quick)
    assert slow_llm.stats()["requests_total"] >= 2

    # A worker serving only rag-large never took a rag-small job, and the other way round.
    wait = [wait_job(client, job_id, 60) for job_id in flood]
    assert {j["status"] for j in wait} == {"succeeded"}
    workers = parts["workers"]
    took_by = {
        name: {e["job_id"] for e in _logged(workers[name], "job.started") if e.get("app")}
        for name in ("rag-small", "rag-large")
    }
    assert took_by["rag-large"] == set(flood)
    assert took_by["rag-small"] == set(quick)


def test_a_sigkilled_workers_app_job_is_taken_over(
    cluster: tuple[httpx.Client, dict[str, Any]],
) -> None:
    """Two workers serve slowchat (ChatOpenAI against the slow mock); the one running the job
    is SIGKILLed mid-request and the other takes the job over as attempt 2."""
    client, parts = cluster
    pair = [parts["workers"]["rag-small"], parts["workers"]["spare"]]
    job_id = submit(client, "slowchat", "When does the Aurora office open?")

    def runner() -> Proc | None:
        return next((w for w in pair if job_id in _started(w)), None)

    victim = _wait(runner, 20, "the job to start")
    survivor = next(w for w in pair if w is not victim)
    victim.signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    killed_at = time.monotonic()
    job = wait_job(client, job_id, 40)
    took = time.monotonic() - killed_at
    assert (job["status"], job["attempts"], job["app"]) == ("succeeded", 2, "slowchat"), job
    assert "8 am" in job["result"]["output"]
    assert _started(survivor).get(job_id) == 2
    assert took < 10 + SLOW_TTFT_S, took


def _started(proc: Proc) -> dict[str, int]:
    return {e["job_id"]: e["attempt"] for e in _logged(proc, "job.started") if e.get("app")}


def test_a_worker_refuses_a_queue_it_has_no_app_for(
    cluster: tuple[httpx.Client, dict[str, Any]],
) -> None:
    _, parts = cluster
    proc = Proc(
        ragserve_command("worker", "--queue", "nope"),
        child_env(parts["env"]),
        parts["logs"] / "nope.log",
    )
    try:
        assert proc.wait(30) == 1
    finally:
        proc.stop()
    assert "--queue nope: no such queue here" in proc.log()
