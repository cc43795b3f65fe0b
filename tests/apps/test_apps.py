"""Apps through the real service: ``ragserve serve`` with the sample apps and the examples,
over HTTP, the session's mock LLM standing in for OpenAI (``OPENAI_BASE_URL``).

One service for the module (start-up is most of the cost); each test uses its own apps.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import EXAMPLES_DIR, apps_env, events, submit, wait_job

from support import MockLLM, running_service, service_env

APPS = {
    "greet": "sample_apps:greet",
    "counter": "sample_apps:counter",
    "flaky": "sample_apps:flaky",
    "reject": "sample_apps:reject",
    "lookup": "sample_apps:lookup",
    "odd": "sample_apps:odd",
    "prototype": "prototype_chain:chain",
    "review": "langgraph_two_nodes:graph",
}


@pytest.fixture(scope="module")
def service(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    env = {
        # A short attempt limit (and two attempts) for the timeout test; every other app
        # finishes well within it.
        **service_env(
            new_database_url(),
            retry_base_s=0.05,
            worker_concurrency=8,
            job_timeout_s=3,
            max_attempts=2,
        ),
        **apps_env(APPS, OPENAI_BASE_URL=mock_llm.base_url, OPENAI_API_KEY="sk-test"),
    }
    with (
        running_service(env, tmp_path_factory.mktemp("apps")) as (url, _),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        yield client


@pytest.fixture
def llm(mock_llm: MockLLM) -> Iterator[MockLLM]:
    yield mock_llm
    mock_llm.configure(ttft=0.05, tps=200)


def test_apps_are_listed_with_their_schemas(service: httpx.Client) -> None:
    apps = {a["name"]: a for a in service.get("/v1/apps").json()["apps"]}
    assert set(apps) == {"rag", *APPS}
    assert apps["rag"]["queue"] == "answer"  # answer jobs keep their queue
    assert apps["greet"]["queue"] == "greet"
    assert apps["rag"]["input_schema"]["required"] == ["query"]
    assert apps["greet"]["input_schema"]["required"] == ["name"]
    assert apps["review"]["input_schema"]["required"] == ["question"]
    assert apps["prototype"]["input_schema"]["type"] == "string"
    assert apps["prototype"]["output_schema"]["type"] == "string"
    # A Runnable whose schemas cannot be built is listed with {} (anything), not a 500.
    assert apps["odd"]["input_schema"] == {} and apps["odd"]["output_schema"] == {}


def test_output_of_a_simple_chain_is_json(service: httpx.Client) -> None:
    job_id = submit(service, "greet", {"name": "Ada", "times": 2})
    job = wait_job(service, job_id)
    assert job["status"] == "succeeded", job
    assert (job["kind"], job["app"], job["attempts"]) == ("app", "greet", 1)
    output = job["result"]["output"]
    text = "Hello Ada! Hello Ada!"
    assert output["text"] == text
    assert output["message"]["type"] == "ai" and output["message"]["content"] == text
    assert output["document"] == {"page_content": text, "metadata": {"lang": "en"}}
    assert output["model"] == {"name": "Ada", "times": 1}
    assert output["stamp"] == {"day": "2026-01-02", "by": "greeter"}
    assert (output["ratio"], output["pair"]) == ("nan", [1, 2])
    kinds = [kind for kind, _ in events(service, job_id)]
    assert kinds[-1] == "done"
    assert events(service, job_id)[-1][1]["result"] == job["result"]


def test_odd_schemas_do_not_stop_the_app(service: httpx.Client) -> None:
    job = wait_job(service, submit(service, "odd", [1, "two"]))
    assert job["result"] == {"output": {"got": [1, "two"]}}, job


def test_generator_chunks_become_chunk_events(service: httpx.Client) -> None:
    job_id = submit(service, "counter", {"count": 5})
    job = wait_job(service, job_id)
    assert job["status"] == "succeeded", job
    chunks = [data["chunk"] for kind, data in events(service, job_id) if kind == "chunk"]
    assert chunks == [{"n": n} for n in range(5)]
    assert job["result"] == {"output": {"n": 4}}  # dicts do not add up: the last chunk


def test_chat_model_tokens_of_the_prototype_chain(service: httpx.Client, mock_llm: MockLLM) -> None:
    """examples/prototype_chain.py served unchanged: its ChatOpenAI's tokens are ``token``
    events, its parser's chunks ``chunk`` events, and its output is what the same chain gives
    when called directly."""
    question = "When does the Aurora office open?"
    job_id = submit(service, "prototype", question)
    job = wait_job(service, job_id)
    assert job["status"] == "succeeded", job
    answer = job["result"]["output"]
    assert answer == _invoke_example_directly(question, mock_llm.base_url)
    assert "8 am" in answer and answer.endswith("[1]")  # the mock cites its first passage
    stream = events(service, job_id)
    tokens = "".join(d["text"] for kind, d in stream if kind == "token")
    chunks = "".join(d["chunk"] for kind, d in stream if kind == "chunk")
    assert tokens == chunks == answer


def _invoke_example_directly(question: str, base_url: str) -> Any:
    """The example chain called in this process, against the same mock LLM."""
    import importlib.util

    before = {key: os.environ.get(key) for key in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    os.environ.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-test")
    try:
        spec = importlib.util.spec_from_file_location(
            "prototype_chain_direct", EXAMPLES_DIR / "prototype_chain.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # pydantic resolves the annotations through it
        spec.loader.exec_module(module)
        return asyncio.run(module.chain.ainvoke(question))
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_langgraph_example_streams_each_node(service: httpx.Client) -> None:
    """examples/langgraph_two_nodes.py: one chunk per node, the final state as output."""
    job_id = submit(service, "review", {"question": "What is 6 x 7?"})
    job = wait_job(service, job_id)
    assert job["status"] == "succeeded", job
    chunks = [d["chunk"] for kind, d in events(service, job_id) if kind == "chunk"]
    assert [list(c) for c in chunks] == [["draft"], ["review"]]
    assert job["result"]["output"] == {
        "question": "What is 6 x 7?",
        "draft": "Draft answer to: What is 6 x 7?",
        "approved": True,
        "answer": "Reviewed answer to: What is 6 x 7?",
    }


@pytest.mark.parametrize(
    ("app", "value", "loc"),
    [
        ("greet", {"times": 2}, ["body", "input", "name"]),
        ("greet", {"name": "Ada", "times": 9}, ["body", "input", "times"]),
        ("review", {"draft": "x"}, ["body", "input", "question"]),
        ("rag", {"query": "hi", "top_k": 0}, ["body", "input", "top_k"]),
        ("greet", "not an object", ["body", "input"]),
    ],
)
def test_input_failing_the_schema_is_a_422_naming_the_field(
    service: httpx.Client, app: str, value: Any, loc: list[str]
) -> None:
    before = len(service.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
    response = service.post(f"/v1/apps/{app}/jobs", json={"input": value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc, response.text  # as every other 422
    assert len(service.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_config_keys_are_checked(service: httpx.Client) -> None:
    response = service.post(
        "/v1/apps/greet/jobs", json={"input": {"name": "A"}, "config": {"callbacks": []}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "config", "callbacks"]
    job_id = submit(service, "greet", {"name": "A"}, config={"tags": ["t"], "run_name": "x"})
    assert wait_job(service, job_id)["status"] == "succeeded"


def test_idempotency_key_replays_the_same_app_job(service: httpx.Client) -> None:
    def post(key: str, name: str) -> httpx.Response:
        return service.post(
            "/v1/apps/greet/jobs", json={"input": {"name": name}}, headers={"Idempotency-Key": key}
        )

    first, again = post("greet-k1", "Ada"), post("greet-k1", "Ada")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert post("greet-k1", "Bob").status_code == 409  # same key, another body
    assert post("greet-k2", "Ada").json()["job_id"] != first.json()["job_id"]


def test_unknown_app_is_404(service: httpx.Client) -> None:
    response = service.post("/v1/apps/nope/jobs", json={"input": 1})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFound"


def test_transient_error_is_retried_and_succeeds_at_attempt_2(service: httpx.Client) -> None:
    job_id = submit(service, "flaky", "done")
    job = wait_job(service, job_id)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert job["result"] == {"output": "done at attempt 2"}
    retried = [d for kind, d in events(service, job_id) if d.get("status") == "queued" and kind]
    assert retried[-1]["error"] == {
        "type": "ConnectionError",
        "message": "model endpoint hiccup at attempt 1",
    }


@pytest.mark.parametrize(
    ("app", "error"),
    [
        ("reject", {"type": "InvoiceRejected", "message": "invoice 'x' is not ours"}),
        ("lookup", {"type": "KeyError", "message": "'missing'"}),
    ],
)
def test_permanent_error_fails_at_attempt_1(
    service: httpx.Client, app: str, error: dict[str, str]
) -> None:
    job_id = submit(service, app, "x" if app == "reject" else {"a": 1})
    job = wait_job(service, job_id)
    assert (job["status"], job["attempts"]) == ("failed", 1), job
    assert job["error"] == error  # type and message only: no stack trace in the API
    assert job["result"] is None
    assert events(service, job_id)[-1] == ("error", error)
    # A manual retry puts it back on its app's queue: it runs (and fails) once more.
    assert service.post(f"/v1/jobs/{job_id}/retry").status_code == 202
    _wait(lambda: service.get(f"/v1/jobs/{job_id}").json()["attempts"] == 2, 10, "a rerun")
    assert wait_job(service, job_id)["status"] == "failed"


def test_cancel_reaches_the_running_chain(service: httpx.Client, llm: MockLLM) -> None:
    """The job's task is cancelled: ChatOpenAI's request to the model is abandoned (the mock
    sees its client go away) and no result is ever stored."""
    llm.configure(ttft=30.0)
    llm.reset_stats()
    job_id = submit(service, "prototype", "When are travel expenses reimbursed?")
    wait_job(service, job_id, until={"running"})
    _wait(lambda: llm.stats()["in_flight"] == 1, 10, "the model request to start")
    began = time.monotonic()
    assert service.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    _wait(lambda: llm.stats()["requests_cancelled"] == 1, 5, "the model request to be dropped")
    dropped_after = time.monotonic() - began
    time.sleep(0.3)
    job = service.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["result"]) == ("cancelled", None), job
    assert "done" not in [kind for kind, _ in events(service, job_id)]
    assert dropped_after < 3, dropped_after


def test_attempt_timeout_reaches_the_running_chain(service: httpx.Client, llm: MockLLM) -> None:
    """RAGSERVE_JOB_TIMEOUT_S ends each attempt's model request (the mock sees both dropped);
    the job fails as JobTimeout after its two attempts, without a result."""
    llm.configure(ttft=30.0)
    llm.reset_stats()
    job_id = submit(service, "prototype", "Who reimburses travel?")
    job = wait_job(service, job_id, 20)
    assert (job["status"], job["attempts"], job["result"]) == ("failed", 2, None), job
    assert job["error"]["type"] == "JobTimeout"
    _wait(lambda: llm.stats()["requests_cancelled"] == 2, 5, "both model requests dropped")


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_answer_jobs_run_as_the_rag_app(service: httpx.Client, tmp_path: Path) -> None:
    """``POST /v1/jobs`` and ``POST /v1/apps/rag/jobs`` run the same pipeline: the first is an
    answer job (result {answer, sources}), the second an app job (result {output: ...})."""
    docs = {"documents": [{"text": "The Aurora office opens at 8 am.", "source": "o.md"}]}
    upload = service.post("/v1/collections/kb/documents", json=docs)
    assert wait_job(service, upload.json()["job_id"])["status"] == "succeeded"
    body = {"query": "When does the office open?", "collection": "kb"}
    answer = wait_job(service, service.post("/v1/jobs", json=body).json()["job_id"])
    assert (answer["kind"], answer["app"]) == ("answer", "rag")
    app_job_id = submit(service, "rag", body)
    app_job = wait_job(service, app_job_id)
    assert (app_job["kind"], app_job["app"], app_job["status"]) == ("app", "rag", "succeeded")
    assert app_job["result"] == {"output": answer["result"]}
    kinds = [kind for kind, _ in events(service, app_job_id)]
    assert "sources" in kinds and "token" in kinds and kinds[-1] == "done"
    # Cached like answers, under a key of its own (the result's shape differs).
    again = service.post("/v1/apps/rag/jobs", json={"input": body}).json()
    assert again["cached"] is True
    assert wait_job(service, again["job_id"])["result"] == app_job["result"]
