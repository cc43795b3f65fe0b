"""ApiClient retries over real TCP: 503 with Retry-After, resets, hang-ups, deadlines.

The faults come from :class:`support.http_front.HttpFront`, a small HTTP server that records every
request it gets, so each test checks what actually went over the wire: how many tries, with
which ``Idempotency-Key``, which bodies, how far apart.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_client import ALL_IDS, ScriptedService, ids, job_body, scripted_service

from ragserve.client import ApiClient, ApiError, RetryPolicy, ServiceUnreachable, StreamInterrupted
from ragserve.jobs.models import JobStatus
from support.http_front import Answer, Forward, HangUp, HttpFront, Reset

FAST = RetryPolicy(deadline_s=5, base_delay_s=0.01, max_delay_s=0.05)
ACCEPTED = {"job_id": "j1", "status": "queued", "status_url": "/v1/jobs/j1"}
BUSY = Answer(503, {"error": {"type": "Unavailable", "message": "draining"}}, {"Retry-After": "1"})


@pytest.fixture
def front() -> Iterator[HttpFront]:
    """A front without upstream: every answer is planned by the test."""
    with HttpFront().running() as server:
        yield server


@pytest.fixture
def client(front: HttpFront) -> Iterator[ApiClient]:
    with ApiClient(front.url, timeout=5, retry=FAST) as api:
        yield api


def keys(front: HttpFront, method: str, path: str) -> list[str | None]:
    return [seen.headers.get("idempotency-key") for seen in front.requests(method, path)]


def test_post_retried_after_503_honours_retry_after_with_one_generated_key(
    front: HttpFront, client: ApiClient
) -> None:
    front.plan("POST", "/v1/jobs", BUSY, BUSY, Answer(202, ACCEPTED))
    assert client.submit("q?") == ACCEPTED
    tries = front.requests("POST", "/v1/jobs")
    assert len(tries) == 3
    generated = keys(front, "POST", "/v1/jobs")
    assert len(set(generated)) == 1 and generated[0] is not None
    assert uuid.UUID(generated[0]).version == 4
    assert len({seen.body for seen in tries}) == 1  # the same body each time
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # Retry-After: 1, though backoff is ~0.01 s


def test_each_call_gets_its_own_generated_key(front: HttpFront, client: ApiClient) -> None:
    front.plan("POST", "/v1/jobs", Answer(202, ACCEPTED), Answer(202, ACCEPTED))
    client.submit("q?")
    client.submit("q?")
    first, second = keys(front, "POST", "/v1/jobs")
    assert first and second and first != second


def test_post_retried_after_reset_and_hang_up_with_the_callers_key(
    front: HttpFront, client: ApiClient
) -> None:
    front.plan("POST", "/v1/jobs", Reset(), HangUp(), Answer(202, ACCEPTED))
    assert client.submit("q?", idempotency_key="k-7") == ACCEPTED
    assert keys(front, "POST", "/v1/jobs") == ["k-7", "k-7", "k-7"]


@pytest.mark.parametrize("status", [502, 504])
def test_ask_cancel_and_get_are_retried(front: HttpFront, client: ApiClient, status: int) -> None:
    gateway = Answer(status, None)
    done = job_body("j1")
    front.plan("POST", "/v1/ask", gateway, Reset(), Answer(200, done))
    assert client.ask("q?", wait_s=1) == (200, done)
    assert len(set(keys(front, "POST", "/v1/ask"))) == 1
    cancelled = job_body("j1", JobStatus.cancelled, result=None)
    front.plan("POST", "/v1/jobs/j1/cancel", gateway, Answer(200, cancelled))
    assert client.cancel("j1") == cancelled
    front.plan("GET", "/v1/jobs/j1", gateway, HangUp(), Answer(200, done))
    assert client.get_job("j1") == done
    assert len(front.requests("GET", "/v1/jobs/j1")) == 3


@pytest.mark.parametrize(
    "answer",
    [
        Answer(422, {"detail": [{"loc": ["body", "query"], "msg": "too short"}]}),
        Answer(409, {"error": {"type": "Conflict", "message": "key used for another body"}}),
        Answer(500, {"error": {"type": "InternalError", "message": "bug"}}),
        Answer(429, {"error": {"type": "TooMany", "message": "slow down"}}, {"Retry-After": "1"}),
    ],
)
def test_other_errors_are_not_retried(front: HttpFront, client: ApiClient, answer: Answer) -> None:
    front.plan("POST", "/v1/jobs", answer, Answer(202, ACCEPTED))
    with pytest.raises(ApiError) as info:
        client.submit("q?")
    assert info.value.status == answer.status
    assert len(front.requests("POST", "/v1/jobs")) == 1


def test_a_409_on_the_first_try_of_retry_is_raised(front: HttpFront, client: ApiClient) -> None:
    conflict = {"error": {"type": "Conflict", "message": "job j1 is succeeded"}}
    front.plan("POST", "/v1/jobs/j1/retry", Answer(409, conflict))
    with pytest.raises(ApiError) as info:
        client.retry("j1")
    assert info.value.status == 409 and not info.value.earlier_try_uncertain
    assert front.requests("GET", "/v1/jobs/j1") == []


def test_a_409_after_a_lost_answer_of_retry_is_success_while_the_job_runs_again(
    front: HttpFront, client: ApiClient
) -> None:
    conflict = {"error": {"type": "Conflict", "message": "job j1 is queued"}}
    queued = job_body("j1", JobStatus.queued, started_at=None, finished_at=None, result=None)
    front.plan("POST", "/v1/jobs/j1/retry", Reset(), Answer(409, conflict))
    front.plan("GET", "/v1/jobs/j1", Answer(200, queued))
    assert client.retry("j1") == queued
    # ... but not when the job is over: then the 409 may be about another state of affairs
    front.plan("POST", "/v1/jobs/j1/retry", Answer(504, None), Answer(409, conflict))
    front.plan("GET", "/v1/jobs/j1", Answer(200, job_body("j1")))
    with pytest.raises(ApiError) as info:
        client.retry("j1")
    assert info.value.status == 409 and info.value.earlier_try_uncertain


def test_upload_resends_the_files_on_every_try(
    front: HttpFront, client: ApiClient, tmp_path: Path
) -> None:
    paths = [tmp_path / "a.md", tmp_path / "b.txt"]
    paths[0].write_text("# Alpha\n" + "alpha " * 50_000, encoding="utf-8")
    paths[1].write_bytes("贝塔".encode())
    route = "/v1/collections/docs/documents"
    front.plan("POST", route, Reset(), BUSY, Answer(202, ACCEPTED))
    assert client.upload_files("docs", paths, {"team": "a"}) == ACCEPTED
    tries = front.requests("POST", route)
    assert len(tries) == 3 and len(set(keys(front, "POST", route))) == 1
    for seen in tries:
        assert seen.body.count(b"alpha ") == 50_000 and "贝塔".encode() in seen.body
        assert b'{"team": "a"}' in seen.body
    bodies = {s.body.replace(s.headers["content-type"].split("=")[1].encode(), b"") for s in tries}
    assert len(bodies) == 1  # identical apart from the multipart boundary


def test_the_deadline_bounds_all_tries(front: HttpFront) -> None:
    policy = RetryPolicy(deadline_s=1.0, base_delay_s=0.05, max_delay_s=0.2)
    front.plan("POST", "/v1/jobs", *[Answer(503, None)] * 100)
    with ApiClient(front.url, timeout=5, retry=policy) as api:
        started = time.monotonic()
        with pytest.raises(ApiError) as info:
            api.submit("q?")
        elapsed = time.monotonic() - started
    assert info.value.status == 503
    tries = len(front.requests("POST", "/v1/jobs"))
    assert 4 <= tries < 30
    assert 0.6 < elapsed < 1.0 + 1.0  # gave up, not slept past the deadline (plus slack)
    assert "gave up after" in info.value.__notes__[0]


def test_a_retry_after_beyond_the_deadline_gives_up_at_once(front: HttpFront) -> None:
    later = Answer(503, None, {"Retry-After": "60"})
    front.plan("POST", "/v1/jobs", later, Answer(202, ACCEPTED))
    with ApiClient(front.url, timeout=5, retry=RetryPolicy(deadline_s=2)) as api:
        started = time.monotonic()
        with pytest.raises(ApiError):
            api.submit("q?")
    assert time.monotonic() - started < 1
    assert len(front.requests("POST", "/v1/jobs")) == 1


def test_refused_connects_give_up_early_when_the_service_was_never_reached() -> None:
    with HttpFront().running() as gone:
        url = gone.url
    policy = RetryPolicy(deadline_s=30, unreachable_after_s=0.5, base_delay_s=0.05)
    with ApiClient(url, timeout=2, retry=policy) as api:
        started = time.monotonic()
        with pytest.raises(ServiceUnreachable):
            api.submit("q?")
        assert time.monotonic() - started < 2


def test_refused_connects_are_retried_to_the_deadline_once_the_service_answered() -> None:
    """A replica that went away after answering: its port refuses until one comes back."""
    policy = RetryPolicy(deadline_s=10, unreachable_after_s=0.2, base_delay_s=0.05)
    done = job_body("j1")
    with HttpFront().running() as first:
        first.plan("GET", "/v1/jobs/j1", Answer(200, done))
        api = ApiClient(first.url, timeout=2, retry=policy)
        assert api.get_job("j1") == done
    back = HttpFront(port=first.port)  # the next replica, on the same address
    back.plan("GET", "/v1/jobs/j1", Answer(200, done))
    comeback = threading.Timer(1.0, back.start)
    started = time.monotonic()
    comeback.start()
    try:
        assert api.get_job("j1") == done  # refused for a second, far past unreachable_after_s
        assert 0.9 < time.monotonic() - started < 5
    finally:
        comeback.join()
        back.stop()
        api.close()


# --------------------------------------------------------------------------- event streams


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, ScriptedService]]:
    with scripted_service() as running:
        yield running


@pytest.fixture
def stream_front(service: tuple[str, ScriptedService]) -> Iterator[HttpFront]:
    """A front before the scripted event streams of ``test_api_client``."""
    with HttpFront(upstream=service[0]).running() as server:
        yield server


def test_stream_connect_retried_through_503_reset_and_502(stream_front: HttpFront) -> None:
    route = "/v1/jobs/plain/events"
    stream_front.plan("GET", route, BUSY, Reset(), Answer(502, None), Forward())
    with ApiClient(stream_front.url, timeout=5, retry=FAST) as api:
        started = time.monotonic()
        events = list(api.stream_events("plain"))
    assert ids(events) == ALL_IDS
    assert len(stream_front.requests("GET", route)) == 4
    assert time.monotonic() - started >= 1.0  # the 503's Retry-After was honoured


def test_stream_reconnect_after_a_drop_is_retried_through_a_draining_replica(
    stream_front: HttpFront, service: tuple[str, ScriptedService]
) -> None:
    route = "/v1/jobs/drop-retry/events"
    stream_front.plan("GET", route, Forward(), Answer(503, None), HangUp(), Forward())
    with ApiClient(stream_front.url, timeout=5, retry=FAST) as api:
        events = list(api.stream_events("drop-retry"))
    assert ids(events) == ALL_IDS  # nothing lost, nothing repeated
    resumes = [seen.headers.get("last-event-id") for seen in stream_front.requests("GET", route)]
    assert resumes == [None, "3", "3", "3"]
    assert service[1].resume_headers["drop-retry"] == [None, "3"]


def test_stream_gives_up_at_the_deadline(stream_front: HttpFront) -> None:
    route = "/v1/jobs/plain/events"
    stream_front.plan("GET", route, *[Answer(503, None)] * 100)
    policy = RetryPolicy(deadline_s=0.5, base_delay_s=0.05, max_delay_s=0.1)
    with ApiClient(stream_front.url, timeout=5, retry=policy) as api:
        started = time.monotonic()
        with pytest.raises(StreamInterrupted):
            list(api.stream_events("plain"))
    assert time.monotonic() - started < 0.5 + 1.5
