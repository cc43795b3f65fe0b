"""The OpenAI door on the wire: exact fields of completions and chunks, errors in OpenAI's
shape, the job behind each completion, time limits and disconnects (raw HTTP)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
from served import Served

from support import MockLLM

PARKING = "Parking is free for employees on level B2."


def completion(served: Served, **body: Any) -> httpx.Response:
    return served.http.post("/v1/chat/completions", json={"model": "handbook", **body})


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def stream_lines(served: Served, **body: Any) -> tuple[httpx.Headers, list[str]]:
    """The ``data:`` payloads of a streamed completion, in order."""
    payloads: list[str] = []
    with served.http.stream(
        "POST", "/v1/chat/completions", json={"model": "handbook", "stream": True, **body}
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                payloads.append(line.removeprefix("data: "))
            else:
                assert line == "" or line.startswith(":"), line
        return response.headers, payloads


def test_models_are_the_collections(served: Served) -> None:
    body = served.http.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["faq", "handbook"]
    for model in body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and model["owned_by"] == "ragserve"
        assert abs(model["created"] - time.time()) < 600
    one = served.http.get("/v1/models/faq")
    assert one.status_code == 200 and one.json()["id"] == "faq"
    missing = served.http.get("/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_non_streamed_completion(served: Served) -> None:
    question = "Where do employees park their cars?"
    response = completion(served, messages=ask(question), temperature=0.7, max_tokens=5)
    assert response.status_code == 200, response.text
    body = response.json()
    job_id = body["ragserve"]["job_id"]
    assert response.headers["X-Ragserve-Job-Id"] == job_id
    assert body["id"] == f"chatcmpl-{job_id}"
    assert body["object"] == "chat.completion" and body["model"] == "handbook"
    assert isinstance(body["created"], int) and abs(body["created"] - time.time()) < 60
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    message = choice["message"]
    assert message["role"] == "assistant" and message["refusal"] is None
    # The mock quotes passage [1]; the footer resolves [1] for clients without the extension.
    assert message["content"] == f"{PARKING} [1]\n\nSources:\n[1] parking.md"
    usage = body["usage"]
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    extension = body["ragserve"]
    assert extension["question"] == question and extension["cached"] is False
    assert extension["sources"][0]["source"] == "parking.md"
    assert set(extension["sources"][0]) == {
        *("document_id", "source", "chunk_id", "score", "text", "metadata", "location")
    }
    # An ordinary answer job: listed, readable, with the same answer (footer aside).
    job = served.http.get(f"/v1/jobs/{job_id}").json()
    assert job["kind"] == "answer" and job["status"] == "succeeded"
    assert job["query"] == question and job["collection"] == "handbook"
    assert job["result"]["answer"] == f"{PARKING} [1]"
    listed = served.http.get("/v1/jobs", params={"limit": 20}).json()["jobs"]
    assert job_id in [j["job_id"] for j in listed]
    # Asked again: cached like any answer, and a plain answer without the footer if asked so.
    again = completion(served, messages=ask(question), ragserve={"sources_footer": False}).json()
    assert again["ragserve"]["cached"] is True and again["ragserve"]["job_id"] != job_id
    assert again["choices"][0]["message"]["content"] == f"{PARKING} [1]"


def test_streamed_completion(served: Served) -> None:
    question = "On which level is employee parking?"
    headers, payloads = stream_lines(
        served, messages=ask(question), stream_options={"include_usage": True}
    )
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    job_id = headers["X-Ragserve-Job-Id"]
    for chunk in chunks:
        assert chunk["id"] == f"chatcmpl-{job_id}"
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == "handbook"
        assert chunk["created"] == chunks[0]["created"]
    first, *middle, finish, usage = chunks
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    # include_usage: every chunk has "usage": null but the last, which has no choices.
    assert all(c["usage"] is None for c in [first, *middle, finish])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    assert middle, "the answer came in content chunks"
    assert all(c["choices"][0]["finish_reason"] is None for c in middle)
    text = "".join(c["choices"][0]["delta"]["content"] for c in middle)
    assert text == f"{PARKING} [1]\n\nSources:\n[1] parking.md"
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] == "stop"
    assert finish["ragserve"]["job_id"] == job_id
    assert finish["ragserve"]["sources"][0]["source"] == "parking.md"
    job = served.wait_job(job_id)
    assert job["status"] == "succeeded" and job["query"] == question
    # Without include_usage no chunk has a usage field; a cached answer streams as well.
    _, payloads = stream_lines(served, messages=ask(question))
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all("usage" not in c for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == f"{PARKING} [1]\n\nSources:\n[1] parking.md"
    assert chunks[-1]["ragserve"]["cached"] is True


def test_errors_are_openai_shaped(served: Served) -> None:
    def error(response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code"}
        detail: dict[str, Any] = body["error"]
        return detail

    unknown = error(completion(served, model="nope", messages=ask("hi")), 404)
    assert unknown["code"] == "model_not_found" and unknown["param"] == "model"
    assert unknown["type"] == "invalid_request_error"
    two = error(completion(served, messages=ask("hi"), n=2), 400)
    assert two["param"] == "n" and two["type"] == "invalid_request_error"
    empty = error(completion(served, messages=[]), 400)
    assert empty["param"] == "messages"
    no_user = error(completion(served, messages=[{"role": "system", "content": "Be brief."}]), 400)
    assert no_user["param"] == "messages"
    bad_role = error(completion(served, messages=[{"role": "robot", "content": "x"}]), 400)
    assert bad_role["param"] == "messages[0].role"
    missing = error(served.http.post("/v1/chat/completions", json={"messages": ask("x")}), 400)
    assert missing["code"] == "missing_required_parameter" and missing["param"] == "model"
    broken = served.http.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert error(broken, 400)["code"] == "invalid_json"
    scoped = error(completion(served, messages=ask("x"), ragserve={"top_k": 0}), 400)
    assert scoped["param"] == "ragserve.top_k"
    too_long = error(completion(served, messages=ask("why? " * 2000)), 400)
    assert too_long["param"] == "messages" and "8000" in too_long["message"]
    nul = error(completion(served, messages=ask("x"), ragserve={"filters": {"k": "a\u0000"}}), 400)
    assert nul["param"] == "ragserve.filters"
    # The rest of ragserve keeps its own 422 shape.
    assert served.http.post("/v1/jobs", json={}).status_code == 422


def test_history_makes_the_question_self_contained(served: Served) -> None:
    earlier = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Where do employees park?"},
        {"role": "assistant", "content": f"{PARKING} [1]"},
    ]
    follow_up = completion(served, messages=[*earlier, *ask("Is it free?")]).json()
    assert follow_up["ragserve"]["question"] == "Where do employees park? Is it free?"
    job = served.http.get(f"/v1/jobs/{follow_up['ragserve']['job_id']}").json()
    assert job["query"] == "Where do employees park? Is it free?"
    new_topic = "What is the guest Wi-Fi network called?"
    standalone = completion(served, messages=[*earlier, *ask(new_topic)]).json()
    assert standalone["ragserve"]["question"] == new_topic
    assert "Lumen-Guest" in standalone["choices"][0]["message"]["content"]


def test_idempotency_key_is_honoured(served: Served) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"model": "handbook", "messages": ask("How many days of annual leave?")}
    first = served.http.post("/v1/chat/completions", json=body, headers=key).json()
    again = served.http.post("/v1/chat/completions", json=body, headers=key).json()
    assert first["ragserve"]["job_id"] == again["ragserve"]["job_id"]
    other = {**body, "messages": ask("Something else entirely?")}
    conflict = served.http.post("/v1/chat/completions", json=other, headers=key)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"


def test_slow_answer_times_out_naming_its_job(served: Served, mock_llm: MockLLM) -> None:
    mock_llm.configure(ttft=1.0)
    try:
        response = completion(
            served, messages=ask("Which network do guests use?"), ragserve={"wait_s": 0.2}
        )
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        job_id = response.headers["X-Ragserve-Job-Id"]
        assert error["code"] == "job_timeout" and f"/v1/jobs/{job_id}" in error["message"]
        job = served.wait_job(job_id)  # it kept running
        assert job["status"] == "succeeded" and "Lumen-Guest" in job["result"]["answer"]
    finally:
        mock_llm.configure(ttft=0.05)


def test_a_failed_job_is_an_openai_error(served: Served, mock_llm: MockLLM) -> None:
    mock_llm.configure(error_rate=1.0, error_status=400)  # permanent: fails at attempt 1
    try:
        response = completion(served, messages=ask("Does the canteen serve breakfast?"))
        assert response.status_code == 500, response.text
        assert response.headers["x-should-retry"] == "false"  # its attempts are spent
        error = response.json()["error"]
        assert error["code"] == "job_failed" and error["type"] == "server_error"
        assert "HTTP 400" in error["message"]
        job = served.http.get(f"/v1/jobs/{response.headers['X-Ragserve-Job-Id']}").json()
        assert job["status"] == "failed"
        _, payloads = stream_lines(served, messages=ask("Is breakfast served in the canteen?"))
        assert payloads[-1] == "[DONE]"
        assert json.loads(payloads[-2])["error"]["code"] == "job_failed"
    finally:
        mock_llm.configure(error_rate=0.0)


def test_a_client_that_disconnects_does_not_lose_the_job(served: Served, mock_llm: MockLLM) -> None:
    mock_llm.configure(ttft=2.0)
    try:
        body = {"model": "handbook", "stream": True, "messages": ask("Who gets annual leave?")}
        with served.http.stream("POST", "/v1/chat/completions", json=body) as response:
            job_id = response.headers["X-Ragserve-Job-Id"]
            first = next(response.iter_lines())
            assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"]
        # The stream is closed before any token; the job goes on and can be fetched.
        assert served.http.get(f"/v1/jobs/{job_id}").json()["status"] in ("queued", "running")
        job = served.wait_job(job_id)
        assert job["status"] == "succeeded" and "23 days" in job["result"]["answer"]
    finally:
        mock_llm.configure(ttft=0.05)


def test_search_endpoint(served: Served) -> None:
    response = served.http.post(
        "/v1/collections/handbook/search", json={"query": "guest wifi name", "top_k": 2}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2 and results[0]["source"] == "wifi.md"
    assert results[0]["score"] >= results[1]["score"]
    assert served.http.post("/v1/collections/nope/search", json={"query": "x"}).status_code == 404
    assert served.http.post("/v1/collections/handbook/search", json={}).status_code == 422
