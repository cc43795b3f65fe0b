"""The job service over real HTTP: a ``ragserve serve`` process, real PostgreSQL, mock LLM."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from httpx_sse import connect_sse

from support import MockLLM, Proc, running_service, service_env

COLLECTION = "handbook"
DOCS = [
    {"source": "leave.md", "text": "Full-time employees get 23 days of paid annual leave."},
    {"source": "wifi.md", "text": "The guest Wi-Fi network is called Lumen-Guest."},
    {"source": "parking.md", "text": "Parking is free for employees on level B2."},
]


@pytest.fixture(scope="module")
def served(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Proc]]:
    """One ``ragserve serve`` for the module, answering with the mock LLM: URL and process."""
    env = service_env(
        new_database_url(),
        llm_base_url=mock_llm.base_url,
        llm_model="mock",
        worker_concurrency=110,
        max_attempts=3,
        retry_base_s=0.05,
        heartbeat_timeout_s=5,
    )
    with running_service(env, tmp_path_factory.mktemp("serve")) as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def api(served: tuple[str, Proc], mock_llm: MockLLM) -> Iterator[httpx.Client]:
    """A client of that service, whose collection holds ``DOCS``."""
    url, _ = served
    with httpx.Client(base_url=url, timeout=30) as client:
        mock_llm.configure(ttft=0.05, tps=200, error_rate=0.0)
        accepted = client.post(
            f"/v1/collections/{COLLECTION}/documents", json={"documents": DOCS}
        ).json()
        assert wait_done(client, accepted["job_id"])["status"] == "succeeded"
        yield client


def wait_done(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} not done in {timeout} s: {job}"
        time.sleep(0.05)


def wait_status(client: httpx.Client, job_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/jobs/{job_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"{job_id} never {status}"
        time.sleep(0.02)


def wait_idle(client: httpx.Client, timeout: float = 30) -> None:
    """Until no job is queued or running (earlier tests leave some going)."""
    deadline = time.monotonic() + timeout
    for status in ("queued", "running"):
        while client.get("/v1/jobs", params={"status": status}).json()["jobs"]:
            assert time.monotonic() < deadline, f"jobs still {status}"
            time.sleep(0.05)


def submit(client: httpx.Client, query: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json={"query": query, "collection": COLLECTION, **extra})
    assert response.status_code == 202, response.text
    return response.json()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.02)


def log_has(proc: Proc, msg: str, job_id: str) -> bool:
    """Whether the process logged ``msg`` about ``job_id`` (its log is JSON lines)."""
    for line in proc.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # not ours (uvicorn's plain lines)
        if entry.get("msg") == msg and entry.get("job_id") == job_id:
            return True
    return False


def read_events(
    client: httpx.Client, job_id: str, last_id: str | None = None
) -> list[dict[str, Any]]:
    """All events until the server closes the stream, as ``{"id", "event", "data"}``."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
        assert source.response.status_code == 200
        return [
            {"id": event.id, "event": event.event, "data": event.json()}
            for event in source.iter_sse()  # checks the content type is text/event-stream
        ]


def test_lifecycle_over_http(api: httpx.Client) -> None:
    response = api.post(
        "/v1/jobs", json={"query": "How many days of annual leave?", "collection": COLLECTION}
    )
    assert response.status_code == 202
    body = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{body['job_id']}" == body["status_url"]
    assert body["events_url"] == f"/v1/jobs/{body['job_id']}/events"
    assert body["status"] == "queued"
    job = wait_done(api, body["job_id"])
    assert job["status"] == "succeeded" and job["kind"] == "answer"
    assert job["attempts"] == 1 and job["error"] is None
    assert job["started_at"] and job["finished_at"] and job["created_at"]
    assert "23 days" in job["result"]["answer"]  # the mock quotes the first passage
    source = job["result"]["sources"][0]
    assert set(source) == {
        *("document_id", "source", "chunk_id", "score", "text", "metadata", "location")
    }
    assert source["source"] == "leave.md"
    assert source["location"] == {"page": None, "section": None}  # no headings in it
    listed = api.get("/v1/jobs", params={"limit": 2}).json()["jobs"]
    assert listed[0]["job_id"] == body["job_id"]
    assert len(listed) == 2 and listed[0]["created_at"] >= listed[1]["created_at"]
    only = api.get("/v1/jobs", params={"status": "succeeded", "limit": 50}).json()["jobs"]
    assert only and all(j["status"] == "succeeded" for j in only)
    assert api.get("/v1/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.get("/v1/jobs/not-a-uuid").status_code == 404
    collections = api.get("/v1/collections").json()["collections"]
    assert any(c["name"] == COLLECTION and c["documents"] == 3 for c in collections)


def test_events_stream_and_resume(api: httpx.Client, mock_llm: MockLLM) -> None:
    mock_llm.configure(ttft=0.2, tps=40)
    try:
        job_id = submit(api, "What is the guest Wi-Fi called?")["job_id"]
        events = read_events(api, job_id)
    finally:
        mock_llm.configure(ttft=0.05, tps=200)
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["status", "status", "sources"]
    assert [e["data"]["status"] for e in events[:2]] == ["queued", "running"]
    assert kinds[-1] == "done" and kinds.count("token") >= 2
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    streamed = "".join(e["data"]["text"] for e in events if e["event"] == "token")
    assert streamed == events[-1]["data"]["result"]["answer"]
    assert "Lumen-Guest" in streamed
    resumed = read_events(api, job_id, last_id=events[2]["id"])
    assert resumed == events[3:]  # exactly the rest: nothing lost, nothing repeated
    assert read_events(api, job_id, last_id=events[-1]["id"]) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "top_k": "many"}, "top_k"),
        ({"query": "x", "collection": "no spaces allowed"}, "collection"),
        ({"query": "x", "document_scope": "a.md"}, "document_scope"),
        ({"query": "x", "filters": ["team"]}, "filters"),
        ({"query": "x", "surprise": 1}, "surprise"),
        ({"query": 42}, "query"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json())


def test_other_bad_requests_are_4xx_never_500(api: httpx.Client) -> None:
    cases = [
        api.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}),
        api.post("/v1/jobs", content=b"query=x"),
        api.post("/v1/ask", json={"query": "x", "wait_s": -1}),
        api.get("/v1/jobs", params={"limit": 0}),
        api.get("/v1/jobs", params={"status": "bogus"}),
        api.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": []}),
        api.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": [{"text": "x"}]}),
        api.post(
            f"/v1/collections/{COLLECTION}/documents",
            content=b"raw",
            headers={"content-type": "text/plain"},
        ),
        api.post("/v1/collections/bad%20name/documents", json={"documents": DOCS}),
        api.delete(f"/v1/collections/{COLLECTION}/documents/not-a-uuid"),
        api.get("/v1/collections/missing/documents"),
        api.post("/v1/jobs/not-a-uuid/cancel"),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, (response.request.url, response.text)
        assert "Traceback" not in response.text
    events = api.get(
        f"/v1/jobs/{submit(api, 'ping')['job_id']}/events", headers={"Last-Event-ID": "abc"}
    )
    assert events.status_code == 422 and "Last-Event-ID" in events.text


def test_idempotency_key(api: httpx.Client) -> None:
    key = {"Idempotency-Key": f"k-{time.time_ns()}"}
    body = {"query": "Where can I park?", "collection": COLLECTION}
    first = api.post("/v1/jobs", json=body, headers=key)
    again = api.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    other = api.post("/v1/jobs", json={**body, "top_k": 2}, headers=key)
    assert other.status_code == 409
    assert other.json()["error"]["type"] == "Conflict"


def test_cache_hit_then_invalidated_by_ingest(api: httpx.Client, mock_llm: MockLLM) -> None:
    question = f"Which level is parking on? {time.time_ns()}"
    first = wait_done(api, submit(api, question)["job_id"])
    wait_idle(api)
    served = mock_llm.stats()["requests_total"]
    hit = submit(api, "  " + question.upper() + " ?")  # same question, other spelling
    assert hit["status"] == "succeeded" and hit["cached"] is True
    cached = api.get(f"/v1/jobs/{hit['job_id']}").json()
    assert cached["cached"] is True and cached["result"] == first["result"]
    assert hit["job_id"] != first["job_id"]
    assert mock_llm.stats()["requests_total"] == served  # the LLM was not asked again
    assert [e["event"] for e in read_events(api, hit["job_id"])][-1] == "done"
    # Any change to the collection invalidates: a new document, then a delete.
    extra = api.post(
        f"/v1/collections/{COLLECTION}/documents",
        json={"documents": [{"source": "new.md", "text": "Bikes go to B1."}]},
    )
    assert wait_done(api, extra.json()["job_id"])["status"] == "succeeded"
    after_ingest = submit(api, question)
    assert after_ingest["cached"] is False
    wait_done(api, after_ingest["job_id"])
    assert submit(api, question)["cached"] is True
    docs = api.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]
    new_id = next(d["document_id"] for d in docs if d["source"] == "new.md")
    assert api.delete(f"/v1/collections/{COLLECTION}/documents/{new_id}").status_code == 204
    assert submit(api, question)["cached"] is False


def test_identical_questions_in_flight_share_one_computation(
    api: httpx.Client, mock_llm: MockLLM
) -> None:
    wait_idle(api)
    mock_llm.configure(ttft=1.0)
    try:
        served = mock_llm.stats()["requests_total"]
        question = f"Is parking free? {time.time_ns()}"
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: submit(api, question), range(8)))
        assert len({a["job_id"] for a in answers}) == 1
        assert sum(a["coalesced"] for a in answers) == 7
        assert wait_done(api, answers[0]["job_id"])["status"] == "succeeded"
        assert mock_llm.stats()["requests_total"] == served + 1
    finally:
        mock_llm.configure(ttft=0.05)


def test_cancel_running_job_stops_it_without_result(
    api: httpx.Client, served: tuple[str, Proc], mock_llm: MockLLM
) -> None:
    _, proc = served
    wait_idle(api)
    mock_llm.configure(ttft=20)
    try:
        job_id = submit(api, f"Slow question {time.time_ns()}")["job_id"]
        wait_status(api, job_id, "running")
        wait_until(lambda: mock_llm.stats()["in_flight"] == 1, "the LLM is asked")
        cancelled = api.post(f"/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        # Long before the LLM's 20 s: the worker stops the attempt and abandons the request.
        wait_until(lambda: log_has(proc, "job stopped: cancelled", job_id), "worker stops", 5)
        wait_until(lambda: mock_llm.stats()["in_flight"] == 0, "LLM request abandoned", 5)
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "cancelled" and job["result"] is None
        events = read_events(api, job_id)
        assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "cancelled"
        assert "done" not in [e["event"] for e in events]
        again = api.post(f"/v1/jobs/{job_id}/cancel").json()
        assert again["status"] == "cancelled"
    finally:
        mock_llm.configure(ttft=0.05)


def test_transient_errors_retry_then_dead_letter_then_manual_retry(
    api: httpx.Client, mock_llm: MockLLM
) -> None:
    mock_llm.configure(error_rate=1.0, error_status=503)
    try:
        job_id = submit(api, f"Doomed {time.time_ns()}")["job_id"]
        job = wait_done(api, job_id)
    finally:
        mock_llm.configure(error_rate=0.0)
    assert job["status"] == "failed" and job["attempts"] == 3
    assert job["error"]["type"] == "TransientProviderError"
    assert "503" in job["error"]["message"]
    events = read_events(api, job_id)
    assert [e["data"]["attempt"] for e in events if e["data"].get("status") == "running"] == [
        1,
        2,
        3,
    ]
    retried = api.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 202
    job = wait_done(api, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 4 and job["error"] is None
    assert api.post(f"/v1/jobs/{job_id}/retry").status_code == 409


def test_permanent_error_fails_at_once(api: httpx.Client) -> None:
    response = api.post("/v1/jobs", json={"query": "anything", "collection": "missing"})
    job = wait_done(api, response.json()["job_id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["type"] == "NotFound" and "missing" in job["error"]["message"]


def test_ask_waits_or_falls_back_to_202(api: httpx.Client, mock_llm: MockLLM) -> None:
    quick = api.post(
        "/v1/ask",
        json={"query": f"Wi-Fi name? {time.time_ns()}", "collection": COLLECTION, "wait_s": 20},
    )
    assert quick.status_code == 200
    assert quick.json()["status"] == "succeeded" and quick.json()["result"]["answer"]
    mock_llm.configure(ttft=3)
    try:
        slow = api.post(
            "/v1/ask",
            json={
                "query": f"Leave days? {time.time_ns()}",
                "collection": COLLECTION,
                "wait_s": 0.2,
            },
        )
    finally:
        mock_llm.configure(ttft=0.05)
    assert slow.status_code == 202 and slow.headers["Location"].startswith("/v1/jobs/")
    assert wait_done(api, slow.json()["job_id"])["status"] == "succeeded"


def test_multipart_upload_bad_file_fails_alone(api: httpx.Client) -> None:
    files = [
        ("files", ("notes.txt", b"Lockers are on floor 2.", "text/plain")),
        ("files", ("broken.pdf", b"%PDF-1.4 garbage", "application/pdf")),
    ]  # a type no loader reads is refused at submission (415): tests/api/test_upload_limits.py
    response = api.post(
        "/v1/collections/uploads/documents",
        files=files,
        data={"metadata": json.dumps({"team": "ops"})},
    )
    assert response.status_code == 202, response.text
    job = wait_done(api, response.json()["job_id"])
    assert job["kind"] == "ingest" and job["status"] == "succeeded"
    by_source = {d["source"]: d for d in job["result"]["documents"]}
    assert by_source["notes.txt"]["status"] == "ingested" and by_source["notes.txt"]["chunks"] == 1
    assert by_source["broken.pdf"]["status"] == "failed" and by_source["broken.pdf"]["error"]
    docs = api.get("/v1/collections/uploads/documents").json()["documents"]
    assert [d["metadata"]["team"] for d in docs] == ["ops"]
    none_readable = api.post(
        "/v1/collections/uploads/documents",
        files=[("files", ("x.pdf", b"nope", "application/pdf"))],
    )
    job = wait_done(api, none_readable.json()["job_id"])
    assert job["status"] == "failed" and job["error"]["type"] == "DocumentError"
    assert job["result"]["documents"][0]["status"] == "failed"


def test_hundred_concurrent_jobs_all_succeed(api: httpx.Client, mock_llm: MockLLM) -> None:
    # A first token after 3 s: long enough that all 100 overlap even when submissions and
    # question embeddings trickle in slowly on a busy machine (0.5 s was not, under load).
    mock_llm.configure(ttft=3.0, tps=100)
    try:
        with ThreadPoolExecutor(16) as pool:
            ids = list(
                pool.map(
                    lambda i: submit(api, f"Question number {i} {time.time_ns()}")["job_id"],
                    range(100),
                )
            )
            jobs = list(pool.map(lambda job_id: wait_done(api, job_id, timeout=120), ids))
    finally:
        mock_llm.configure(ttft=0.05, tps=200)
    assert [j["status"] for j in jobs] == ["succeeded"] * 100
    assert mock_llm.stats()["max_in_flight"] > 32  # they really ran at the same time


def test_health_ready_metrics(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    body = ready.json()
    circuits = body.pop("circuits")  # informative, not a check; see tests/jobs/test_breaker.py
    assert {provider: c["state"] for provider, c in circuits.items()} == {"llm": "closed"}
    assert ready.status_code == 200 and body == {
        "ready": True,
        "checks": {
            "draining": False,
            "database": True,
            "schema": True,
            "models": True,
            "listener": True,
            "worker": True,
        },
    }
    metrics = api.get("/metrics").text
    assert 'ragserve_jobs{status="succeeded"}' in metrics
    assert 'ragserve_jobs{status="cancelled"}' in metrics  # every status, zeros included
    assert "ragserve_jobs_submitted_total" in metrics
    assert 'ragserve_circuit_state{provider="llm"} 0.0' in metrics


def test_openapi_documents_every_response_with_the_contract_fields(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def body(path: str, method: str, status: str) -> set[str]:
        response = spec["paths"][path][method]["responses"][status]
        ref = response["content"]["application/json"]["schema"]["$ref"]
        return set(schemas[ref.rsplit("/", 1)[1]]["properties"])

    accepted = {"job_id", "status", "status_url", "events_url"}
    job = {"job_id", "kind", "status", "query", "collection", "attempts", "created_at"}
    job |= {"started_at", "finished_at", "result", "error"}
    assert accepted <= body("/v1/jobs", "post", "202")
    assert job <= body("/v1/jobs/{job_id}", "get", "200")
    assert job <= body("/v1/ask", "post", "200")
    assert accepted <= body("/v1/ask", "post", "202")
    assert accepted <= body("/v1/collections/{name}/documents", "post", "202")
    assert body("/v1/jobs", "get", "200") == {"jobs"}
    assert body("/v1/collections", "get", "200") == {"collections"}
    assert body("/v1/collections/{name}/documents", "get", "200") == {"collection", "documents"}
    assert body("/v1/jobs/{job_id}", "get", "404") == {"error"}
    assert body("/readyz", "get", "503") == {"ready", "checks", "circuits"}
    # What the service really sends matches what it documents.
    collections = api.get("/v1/collections").json()["collections"]
    summary = schemas["CollectionSummary"]["properties"]
    assert collections and all(set(c) == set(summary) for c in collections)
    documents = api.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]
    assert documents and all(
        set(d) == set(schemas["DocumentSummary"]["properties"]) for d in documents
    )


def test_cancelled_queued_job_never_runs(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    start_service: Callable[..., tuple[str, Any]],
    start_worker: Callable[..., Any],
) -> None:
    """With no worker running, a job waits in the queue; cancelled there, it never runs."""
    database_url = new_database_url()
    env = service_env(database_url, llm_base_url=mock_llm.base_url, llm_model="mock")
    url, _ = start_service(env, command="api")
    with httpx.Client(base_url=url, timeout=30) as client:
        cancelled = submit(client, "Never asked")["job_id"]
        kept = submit(client, "Asked later")["job_id"]
        assert client.post(f"/v1/jobs/{cancelled}/cancel").json()["status"] == "cancelled"
        with psycopg.connect(database_url) as conn:
            payloads = {bytes(r[0]) for r in conn.execute("SELECT payload FROM pgqueuer")}
        assert payloads == {kept.encode()}  # the cancelled job's entry was withdrawn
        start_worker(env)
        assert wait_done(client, kept)["status"] == "failed"  # no collection in this database
        job = client.get(f"/v1/jobs/{cancelled}").json()
        assert job["status"] == "cancelled" and job["attempts"] == 0 and job["result"] is None
        assert [e["event"] for e in read_events(client, cancelled)] == ["status", "status"]


def test_each_attempt_is_bounded_by_the_job_timeout(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    start_service: Callable[..., tuple[str, Any]],
) -> None:
    env = service_env(
        new_database_url(),
        llm_base_url=mock_llm.base_url,
        llm_model="mock",
        job_timeout_s=1,
        max_attempts=2,
        retry_base_s=0.05,
    )
    url, _ = start_service(env)
    mock_llm.configure(ttft=30)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            ingest = client.post(
                f"/v1/collections/{COLLECTION}/documents", json={"documents": DOCS[:1]}
            ).json()
            assert wait_done(client, ingest["job_id"])["status"] == "succeeded"
            job = wait_done(client, submit(client, "Will time out")["job_id"], timeout=30)
    finally:
        mock_llm.configure(ttft=0.05)
    assert job["status"] == "failed" and job["attempts"] == 2
    assert job["error"]["type"] == "JobTimeout"
