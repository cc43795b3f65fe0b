"""Backpressure, usage and the token budget against a real ``ragserve serve`` (one worker with 2
job slots in the same process, real PostgreSQL, the mock LLM whose delay we set), serving the
app ``chat`` (limits_apps.py) besides ``rag``.

The tests of this module run in order on one service: the first one makes the first
completions (and checks the usage they cost), the second does the same for app jobs, the third
fills the queue and meets ``RAGSERVE_MAX_QUEUE_WAIT_S``, the last one uses up the day's token
budget.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from support import ROOT, MockLLM, running_service, service_env

COLLECTION = "handbook"
DOCS = [
    {"source": "leave.md", "text": "Full-time employees get 23 days of paid annual leave."},
    {"source": "wifi.md", "text": "The guest Wi-Fi network is called Lumen-Guest."},
]
SLOTS = 2
MAX_WAIT_S = 3.0
BUDGET = 10**9
SLOW_TTFT_S = 1.5
CACHED_QUESTION = "How many days of annual leave do employees get?"
ESTIMATES_TTL_S = 1.1


@pytest.fixture(scope="module")
def database_url(new_database_url: Callable[[], str]) -> str:
    return new_database_url()


@pytest.fixture(scope="module")
def api(
    database_url: str, mock_llm: MockLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    mock_llm.configure(ttft=0.05, tps=200, error_rate=0.0)
    env = service_env(
        database_url,
        llm_base_url=mock_llm.base_url,
        llm_model="mock",
        worker_concurrency=SLOTS,
        max_queue_wait_s=MAX_WAIT_S,
        daily_token_budget=BUDGET,
        apps="chat=limits_apps:chat",
    )
    env |= {
        "PYTHONPATH": str(ROOT / "tests" / "limits"),
        "OPENAI_BASE_URL": mock_llm.base_url,
        "OPENAI_API_KEY": "sk-test",
    }
    with (
        running_service(env, tmp_path_factory.mktemp("limits")) as (url, _proc),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client
    mock_llm.configure(ttft=0.05, tps=200)


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert "estimated_start_s" in body, body
    return body


def ask(client: httpx.Client, query: str) -> httpx.Response:
    return client.post("/v1/jobs", json={"query": query, "collection": COLLECTION})


def wait_done(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """Until the job succeeded, and a moment more: estimates are read at most once a second."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            time.sleep(ESTIMATES_TTL_S)
            return job
        assert time.monotonic() < deadline, f"job {job_id} not done in {timeout} s: {job}"
        time.sleep(0.05)


def usage_today(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/usage")
    assert response.status_code == 200, response.text
    rows = response.json()["usage"]
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert [(r["tenant"], r["day"]) for r in rows] == [("default", today)], rows
    row: dict[str, Any] = rows[0]
    return row


def test_estimates_appear_with_the_first_completion_and_usage_counts_them(
    api: httpx.Client, mock_llm: MockLLM
) -> None:
    # Nothing of either kind has finished yet: the estimate is unknown (null).
    first = accepted(api.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": DOCS}))
    assert first["estimated_start_s"] is None
    wait_done(api, first["job_id"])
    more = [{"source": "parking.md", "text": "Parking is free for employees on level B2."}]
    second = accepted(api.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": more}))
    assert second["estimated_start_s"] == 0.0  # an ingest finished; both slots are free
    wait_done(api, second["job_id"])

    mock_llm.reset_stats()
    answer = accepted(ask(api, CACHED_QUESTION))
    assert answer["estimated_start_s"] is None  # ingests finished, but no answer yet
    wait_done(api, answer["job_id"])
    other = accepted(ask(api, "What is the guest Wi-Fi called?"))
    assert other["estimated_start_s"] == 0.0
    wait_done(api, other["job_id"])

    # The usage of the day: 4 jobs; the LLM tokens are exactly what the mock reported.
    row = usage_today(api)
    stats = mock_llm.stats()
    assert stats["requests_served"] == 2
    assert row["jobs"] == 4
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        stats["prompt_tokens"],
        stats["completion_tokens"],
    )
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["embedding_tokens"] > 0  # chunks of 3 documents and 2 queries (estimated)

    # A cached answer costs nothing: no job counted, no tokens.
    cached = accepted(ask(api, CACHED_QUESTION))
    assert cached["cached"] is True and cached["estimated_start_s"] == 0.0
    assert usage_today(api) == row

    bad = api.get("/v1/usage", params={"from": "2026-02-01", "to": "2026-01-01"})
    assert bad.status_code == 422, bad.text
    assert [e["loc"] for e in bad.json()["detail"]] == [["query", "from"]]
    assert api.get("/v1/usage", params={"from": "not-a-date"}).status_code == 422


def submit_app(client: httpx.Client, app: str, value: Any) -> httpx.Response:
    return client.post(f"/v1/apps/{app}/jobs", json={"input": value})


def test_app_jobs_get_estimates_of_their_own_queue_and_count_their_usage(
    api: httpx.Client, mock_llm: MockLLM
) -> None:
    before = usage_today(api)
    mock_llm.reset_stats()
    # The app chat runs on its own queue, where nothing has finished yet: unknown (null).
    first = accepted(submit_app(api, "chat", {"question": "Who are you?"}))
    assert first["estimated_start_s"] is None
    wait_done(api, first["job_id"])
    second = accepted(submit_app(api, "chat", {"question": "What time is it?"}))
    assert second["estimated_start_s"] == 0.0  # a chat job finished; both slots are free
    wait_done(api, second["job_id"])
    # The app rag runs on the answer queue, which the first test's answers measured.
    rag = accepted(submit_app(api, "rag", {"query": "Who parks free?", "collection": COLLECTION}))
    assert rag["estimated_start_s"] == 0.0
    wait_done(api, rag["job_id"])
    assert metric(api, 'ragserve_queue_expected_wait_seconds{queue="chat"}') == 0.0

    # 3 jobs; their LLM tokens (the chat model's usage_metadata, the rag pipeline's usage)
    # are exactly what the mock reported.
    after, stats = usage_today(api), mock_llm.stats()
    assert stats["requests_served"] == 3
    assert after["jobs"] - before["jobs"] == 3
    assert (
        after["prompt_tokens"] - before["prompt_tokens"],
        after["completion_tokens"] - before["completion_tokens"],
    ) == (stats["prompt_tokens"], stats["completion_tokens"])
    assert after["embedding_tokens"] > before["embedding_tokens"]  # the rag job's query


def service_times(api: httpx.Client) -> list[float]:
    """Start-to-finish seconds of every job of the answer queue that ran (the estimate's
    input): answer jobs and jobs of the app rag."""
    jobs = api.get("/v1/jobs", params={"status": "succeeded", "limit": 1000}).json()["jobs"]
    return [
        (
            dt.datetime.fromisoformat(j["finished_at"]) - dt.datetime.fromisoformat(j["started_at"])
        ).total_seconds()
        for j in jobs
        if j["app"] == "rag" and not j["cached"]
    ]


def metric(api: httpx.Client, series: str) -> float | None:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for_metric(api: httpx.Client, series: str, value: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while metric(api, series) != value:
        assert time.monotonic() < deadline, f"{series} not {value} within {timeout} s"
        time.sleep(0.1)


def test_the_estimate_follows_the_queue_and_the_limit_refuses_new_work(
    api: httpx.Client, mock_llm: MockLLM
) -> None:
    mock_llm.configure(ttft=SLOW_TTFT_S)
    warm_up = [accepted(ask(api, f"Slow warm-up question {i}?")) for i in range(SLOTS)]
    for job in warm_up:
        wait_done(api, job["job_id"])
    wait_for_metric(api, 'ragserve_queue_running{queue="answer"}', 0.0)  # entries cleared
    time.sleep(ESTIMATES_TTL_S)  # the estimator now knows the slower jobs
    service_s = statistics.mean(service_times(api))

    # Submit until refused: the k-th new job has k ahead on 2 slots, so it needs k + 1 - 2
    # completions, one every service_s / 2 seconds.
    submitted: list[tuple[int, dict[str, Any]]] = []
    refusal: httpx.Response | None = None
    for k in range(20):
        response = ask(api, f"Queued question {k} {uuid.uuid4()}?")
        if response.status_code == 429:
            refusal = response
            break
        submitted.append((k, accepted(response)))
    assert refusal is not None, [body["estimated_start_s"] for _, body in submitted]
    estimates = [body["estimated_start_s"] for _, body in submitted]
    assert all(isinstance(e, float) for e in estimates), estimates
    assert estimates == sorted(estimates), estimates  # a longer queue never waits less
    for k, body in submitted:
        formula = max(0, k + 1 - SLOTS) * service_s / SLOTS
        estimate = body["estimated_start_s"]
        assert formula / 2 - 0.1 <= estimate <= formula * 2 + 0.1, (k, estimate, formula)
    assert estimates[-1] <= MAX_WAIT_S < estimates[-1] + service_s  # refused at the limit

    # 429: typed, names the limit, and says in whole seconds when to come back.
    error = refusal.json()["error"]
    assert error["type"] == "QueueFull" and "RAGSERVE_MAX_QUEUE_WAIT_S" in error["message"]
    retry_after = refusal.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= service_s + 1

    # The same estimate is a metric (the KEDA target).
    expected_wait = metric(api, 'ragserve_queue_expected_wait_seconds{queue="answer"}')
    assert expected_wait is not None and expected_wait > MAX_WAIT_S / 2

    # Never refused: a cached answer, and a question already in flight (shared, not re-run).
    assert accepted(ask(api, CACHED_QUESTION))["cached"] is True
    queued_query = api.get(f"/v1/jobs/{submitted[-1][1]['job_id']}").json()["query"]
    assert accepted(ask(api, queued_query))["coalesced"] is True

    for _, body in submitted:  # leave the service idle for the next test
        api.post(f"/v1/jobs/{body['job_id']}/cancel")
    mock_llm.configure(ttft=0.05)


def test_a_used_up_budget_refuses_answers_before_any_llm_call(
    api: httpx.Client, mock_llm: MockLLM, database_url: str
) -> None:
    # The tenant spent its day's budget earlier (as if through many answers).
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE usage SET prompt_tokens = prompt_tokens + %s WHERE tenant = 'default'",
            (BUDGET,),
        )
    mock_llm.reset_stats()
    time.sleep(ESTIMATES_TTL_S)  # the API re-reads a tenant's usage at most once a second
    response = ask(api, f"Anything new {uuid.uuid4()}?")
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == "BudgetExhausted"
    assert "RAGSERVE_DAILY_TOKEN_BUDGET" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 86400
    # App jobs use tokens too: refused alike.
    refused = submit_app(api, "chat", {"question": "And now?"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["type"] == "BudgetExhausted"
    # The cached answer is still served: it costs no tokens.
    assert accepted(ask(api, CACHED_QUESTION))["cached"] is True
    time.sleep(0.3)
    assert mock_llm.stats()["requests_total"] == 0
