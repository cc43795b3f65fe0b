"""ApiClient against a real HTTP server that speaks the API with the server's own models.

The server is a small scripted FastAPI app on uvicorn in a thread (not a mock transport), so the
resume path is exercised on a real dropped TCP connection: the same ``RemoteProtocolError`` a
killed API replica or a proxy timeout produces. Its bodies come from the real code: request
bodies are validated by ``AnswerRequest``/``AskRequest``, jobs are ``Job`` models, sources are
``RetrievedChunk.as_source()``, errors go through the API's own error handlers, and event frames
are written by the API's ``format_event``. A renamed field therefore breaks these tests.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from rich.console import Console

from ragserve.api.errors import install_error_handlers
from ragserve.api.sse import format_event
from ragserve.cli.answer import stream_answer
from ragserve.client import (
    ApiClient,
    ApiError,
    ClientError,
    JobEvent,
    RetryPolicy,
    ServiceUnreachable,
    StreamInterrupted,
)
from ragserve.errors import Conflict, NotFound
from ragserve.jobs.models import AnswerRequest, AskRequest, Job, JobStatus
from ragserve.jobs.models import JobEvent as StoredEvent
from ragserve.kb.types import RetrievedChunk

# --------------------------------------------------------------------------- the server's bodies

SOURCE = RetrievedChunk(
    chunk_id="c1",
    document_id="d1",
    source="guide.md",
    text="ragserve is a service.",
    score=0.91,
).as_source()


def job(job_id: str, status: JobStatus = JobStatus.succeeded, **changes: Any) -> Job:
    """A job as ``GET /v1/jobs/{id}`` shows it; validated, so the body cannot drift."""
    fields: dict[str, Any] = {
        "job_id": job_id,
        "kind": "answer",
        "status": status,
        "query": "what is ragserve?",
        "collection": "default",
        "attempts": 1,
        "created_at": datetime(2025, 1, 1, tzinfo=UTC),
        "started_at": datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC),
        "finished_at": datetime(2025, 1, 1, 0, 0, 2, tzinfo=UTC),
        "result": {"answer": "A service [1]", "sources": [SOURCE]},
        "error": None,
    }
    return Job.model_validate(fields | changes)


def job_body(job_id: str, status: JobStatus = JobStatus.succeeded, **changes: Any) -> Any:
    """The JSON body of :func:`job`, as the client receives it."""
    return job(job_id, status, **changes).model_dump(mode="json")


SCRIPTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "plain": [
        ("status", {"status": "queued", "attempt": 0}),
        ("status", {"status": "running", "attempt": 1}),
        ("sources", {"sources": [SOURCE], "attempt": 1}),
        ("token", {"text": "Hello", "attempt": 1}),
        ("token", {"text": " world", "attempt": 1}),
        ("token", {"text": " [1]", "attempt": 1}),
        ("done", {"result": {"answer": "Hello world [1]", "sources": [SOURCE]}, "attempt": 1}),
    ],
    "retry": [
        ("status", {"status": "running", "attempt": 1}),
        ("token", {"text": "Lost", "attempt": 1}),
        ("token", {"text": " words", "attempt": 1}),
        ("status", {"status": "running", "attempt": 2}),
        ("token", {"text": "Fresh", "attempt": 2}),
        ("token", {"text": " [answer]", "attempt": 2}),
        ("done", {"result": {"answer": "Fresh [answer]", "sources": []}, "attempt": 2}),
    ],
    "cached": [
        ("status", {"status": "succeeded", "attempt": 0}),
        ("done", {"result": {"answer": "From the cache.", "sources": []}, "cached": True}),
    ],
    "cancelled": [
        ("status", {"status": "running", "attempt": 1}),
        ("token", {"text": "Half", "attempt": 1}),
        ("status", {"status": "cancelled", "attempt": 1}),
    ],
}


def frames_of(script: str) -> list[bytes]:
    """The script's events as the API writes them (``id: <seq>``, numbered from 1)."""
    return [
        format_event(StoredEvent(seq=seq, type=kind, data=data)).encode()
        for seq, (kind, data) in enumerate(SCRIPTS[script], start=1)
    ]


# --------------------------------------------------------------------------- scripted server


class ScriptedService:
    """The ragserve API's job endpoints with scripted event streams.

    Job ids pick the behaviour of ``/events``: ``<script>`` streams a script whole;
    ``drop-<script>`` breaks the TCP connection mid-event after 3 events on the first
    connection; ``eof-<script>`` (and ``drained-<script>``, whose job reads as over) ends the
    body cleanly after 2 events (for ``eof-`` the job is still
    running); ``slow-<script>`` stalls after 2 events on the first connection; ``bytes-<script>``
    sends CRLF line ends one byte per chunk, with comments and an event without data;
    ``dead`` always breaks; ``over`` ends at once (the job has finished); ``html`` answers 200
    with a web page.
    """

    def __init__(self) -> None:
        self.resume_headers: dict[str, list[str | None]] = {}
        self.submissions: list[tuple[str | None, AnswerRequest]] = []
        self.lock = threading.Lock()

    def app(self) -> FastAPI:
        app = FastAPI()
        install_error_handlers(app)
        app.post("/v1/jobs", status_code=202)(self.submit)
        app.post("/v1/ask")(self.ask)
        app.get("/v1/jobs")(self.list_jobs)
        app.get("/v1/jobs/{job_id}")(self.get_job)
        app.post("/v1/jobs/{job_id}/cancel")(self.cancel)
        app.post("/v1/jobs/{job_id}/retry", status_code=202)(self.retry)
        app.get("/v1/jobs/{job_id}/events")(self.events)
        return app

    @staticmethod
    def accepted(job_id: str) -> JSONResponse:
        queued = job(job_id, JobStatus.queued, started_at=None, finished_at=None, result=None)
        status_url = f"/v1/jobs/{job_id}"
        body = {
            "job_id": queued.job_id,
            "status": queued.status.value,
            "status_url": status_url,
            "events_url": f"{status_url}/events",
            "cached": queued.cached,
            "coalesced": False,
        }
        return JSONResponse(body, status_code=202, headers={"Location": status_url})

    async def submit(
        self,
        body: AnswerRequest,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        self.submissions.append((idempotency_key, body))
        return self.accepted(idempotency_key or "j-new")

    async def ask(self, body: AskRequest) -> Any:
        if body.wait_s > 0:
            return job("j-asked", query=body.query)
        return self.accepted("j-asked")

    async def list_jobs(self, status: JobStatus | None = None, limit: int = 50) -> dict[str, Any]:
        return {"jobs": [job(f"j{i}", status or JobStatus.succeeded) for i in range(limit)]}

    async def get_job(self, job_id: str) -> Job:
        if job_id == "missing":
            raise NotFound(f"job {job_id!r} not found")
        # jobs whose stream ends early are still running, so the client must resume
        running = job_id.startswith("eof-")
        return job(job_id, JobStatus.running if running else JobStatus.succeeded)

    async def cancel(self, job_id: str) -> Job:
        return job(job_id, JobStatus.cancelled, result=None)

    async def retry(self, job_id: str) -> Job:
        raise Conflict(f"job {job_id} is succeeded: only failed or cancelled jobs retry")

    async def events(self, job_id: str, request: Request) -> Response:
        last = request.headers.get("last-event-id")
        with self.lock:
            seen = self.resume_headers.setdefault(job_id, [])
            seen.append(last)
            first_connection = len(seen) == 1
        mode, _, name = job_id.rpartition("-")
        if job_id == "over":  # a resume after the terminal event: nothing to send
            return sse(self._whole([]))
        if job_id == "html":
            return HTMLResponse("<html><body>not an event stream</body></html>")
        if job_id == "dead":
            return sse(self._then_break([b": hello\n\n"], partial=b""))
        if name not in SCRIPTS:
            raise NotFound(f"job {job_id!r} not found")
        frames = frames_of(name)[int(last) if last else 0 :]
        if mode == "drop" and first_connection:
            return sse(self._then_break(frames[:3], partial=frames[3][:15]))
        if mode in ("eof", "drained") and first_connection:
            frames = frames[:2]
        if mode == "slow" and first_connection:
            return sse(self._then_stall(frames[:2]))
        if mode == "bytes":
            return sse(self._byte_by_byte(frames))
        return sse(self._whole(frames))

    @staticmethod
    async def _whole(frames: list[bytes]) -> AsyncIterator[bytes]:
        yield b": keep-alive\n\n"
        for item in frames:
            yield item

    @staticmethod
    async def _byte_by_byte(frames: list[bytes]) -> AsyncIterator[bytes]:
        # An event without data (only an id) is not dispatched; comments are keep-alives.
        body = (b": hello\n\nid: 0\n\n" + b": ping\n".join(frames)).replace(b"\n", b"\r\n")
        for i in range(len(body)):
            yield body[i : i + 1]
            await asyncio.sleep(0)  # let the bytes leave as separate chunks

    @staticmethod
    async def _then_stall(frames: list[bytes]) -> AsyncIterator[bytes]:
        for item in frames:
            yield item
        await asyncio.sleep(5)  # longer than the client's read timeout, without keep-alives

    @staticmethod
    async def _then_break(frames: list[bytes], partial: bytes) -> AsyncIterator[bytes]:
        for item in frames:
            yield item
        if partial:
            yield partial
        # an exception after the response started makes uvicorn drop the connection without
        # the final empty chunk: the client sees a truncated body, as from a killed replica
        raise ConnectionAbortedError("scripted drop")


def sse(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream")


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, ScriptedService]]:
    with scripted_service() as running:
        yield running


@contextmanager
def scripted_service() -> Iterator[tuple[str, ScriptedService]]:
    """A :class:`ScriptedService` on uvicorn in a thread; its URL and the service."""
    scripted = ScriptedService()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        scripted.app(),
        log_config=None,
        log_level="critical",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", scripted
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@pytest.fixture
def client(service: tuple[str, ScriptedService]) -> Iterator[ApiClient]:
    policy = RetryPolicy(deadline_s=0.3, base_delay_s=0.01, max_delay_s=0.05)
    with ApiClient(service[0], timeout=5, retry=policy) as api:
        yield api


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def ids(events: list[JobEvent]) -> list[str | None]:
    return [event.id for event in events]


ALL_IDS = [str(i) for i in range(1, 8)]

# --------------------------------------------------------------------------- event streams


def test_stream_whole(client: ApiClient, service: tuple[str, ScriptedService]) -> None:
    events = list(client.stream_events("plain"))
    assert ids(events) == ALL_IDS
    assert [e.event for e in events] == [kind for kind, _ in SCRIPTS["plain"]]
    assert [e.data for e in events] == [data for _, data in SCRIPTS["plain"]]
    assert [e.terminal for e in events] == [False] * 6 + [True]
    assert service[1].resume_headers["plain"] == [None]


def test_stream_decodes_crlf_split_anywhere_and_skips_events_without_data(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    events = list(client.stream_events("bytes-plain"))
    assert ids(events) == ALL_IDS
    assert [e.data for e in events] == [data for _, data in SCRIPTS["plain"]]
    assert service[1].resume_headers["bytes-plain"] == [None]


def test_stream_resumes_after_connection_drop(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    events = list(client.stream_events("drop-plain"))
    # no loss and no duplicate, although event 4 was half-sent before the drop
    assert ids(events) == ALL_IDS
    assert "".join(e.data["text"] for e in events if e.event == "token") == "Hello world [1]"
    assert service[1].resume_headers["drop-plain"] == [None, "3"]


def test_stream_resumes_after_clean_end_without_terminal_event(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    events = list(client.stream_events("eof-plain"))
    assert ids(events) == ALL_IDS
    assert service[1].resume_headers["eof-plain"] == [None, "2"]


def test_stream_ends_when_resumed_after_terminal_event(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    assert list(client.stream_events("over", last_event_id="7")) == []
    # The job is over, so the client reads once more from the same id, then stops.
    assert service[1].resume_headers["over"] == ["7", "7"]


def test_stream_cut_by_a_drain_after_the_job_ended_still_delivers_the_final_event(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    # A draining replica ends streams without their final event; meanwhile the job finished
    # (``drained-*`` jobs read as succeeded). The final event must still come, from a resume.
    events = list(client.stream_events("drained-plain"))
    assert ids(events) == ALL_IDS and events[-1].terminal
    assert service[1].resume_headers["drained-plain"] == [None, "2"]


def test_stream_ends_at_cancelled_status(client: ApiClient) -> None:
    events = list(client.stream_events("cancelled"))
    assert [(e.event, e.terminal) for e in events][-1] == ("status", True)
    assert ids(events) == ["1", "2", "3"]


def test_stream_reconnects_after_read_timeout_without_spending_budget(
    service: tuple[str, ScriptedService],
) -> None:
    url, scripted = service
    no_retries = RetryPolicy(deadline_s=0)
    with ApiClient(url, retry=no_retries, stream_read_timeout=0.3) as api:
        events = list(api.stream_events("slow-plain"))
    assert ids(events) == ALL_IDS
    assert scripted.resume_headers["slow-plain"] == [None, "2"]


def test_stream_starts_after_given_last_event_id(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    events = list(client.stream_events("eof-retry", last_event_id="5"))
    assert ids(events) == ["6", "7"]
    assert service[1].resume_headers["eof-retry"] == ["5"]


def test_stream_gives_up_at_the_retry_deadline(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    started = time.monotonic()
    with pytest.raises(StreamInterrupted):
        list(client.stream_events("dead"))
    assert time.monotonic() - started < 0.3 + 1.5  # slack for a loaded machine
    assert len(service[1].resume_headers["dead"]) >= 3


def test_stream_unknown_job_is_api_error_without_retry(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    with pytest.raises(ApiError) as info:
        list(client.stream_events("nope"))
    assert (info.value.status, info.value.type) == (404, "NotFound")
    assert service[1].resume_headers["nope"] == [None]


def test_stream_that_is_not_an_event_stream_fails_without_retry(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    with pytest.raises(ClientError) as info:
        list(client.stream_events("html"))
    assert not isinstance(info.value, StreamInterrupted)
    assert "text/event-stream" in str(info.value)
    assert service[1].resume_headers["html"] == [None]


# --------------------------------------------------------------------------- plain calls


def test_submit_get_list_cancel(client: ApiClient, service: tuple[str, ScriptedService]) -> None:
    accepted = client.submit("q?", "docs", 6, filters={"lang": "en"}, idempotency_key="k1")
    assert (accepted["job_id"], accepted["status"]) == ("k1", "queued")
    assert service[1].submissions[-1] == (
        "k1",
        AnswerRequest(query="q?", collection="docs", top_k=6, filters={"lang": "en"}),
    )
    assert client.get_job("j1") == job_body("j1")
    jobs = client.list_jobs(status="failed", limit=3)
    assert [j["status"] for j in jobs] == ["failed"] * 3
    assert client.cancel("j1") == job_body("j1", JobStatus.cancelled, result=None)


def test_ask_waits_or_accepts(client: ApiClient) -> None:
    status, body = client.ask("q?", wait_s=5)
    assert (status, body) == (200, job_body("j-asked", query="q?"))
    status, accepted = client.ask("q?", wait_s=0)
    assert (status, accepted["status"]) == (202, "queued")


def test_api_errors_are_typed(client: ApiClient) -> None:
    with pytest.raises(ApiError) as missing:
        client.get_job("missing")
    assert (missing.value.status, missing.value.type) == (404, "NotFound")
    with pytest.raises(ApiError) as conflict:
        client.retry("j1")
    assert (conflict.value.status, conflict.value.type) == (409, "Conflict")
    assert "only failed or cancelled" in conflict.value.message
    with pytest.raises(ApiError) as invalid:
        client.submit("", "default", 4)
    assert (invalid.value.status, invalid.value.type) == (422, "validation_error")
    assert invalid.value.message.startswith("query: ")


def test_service_unreachable_on_closed_port() -> None:
    url = closed_port_url()
    with ApiClient(url, timeout=2, retry=RetryPolicy(unreachable_after_s=0.2)) as api:
        with pytest.raises(ServiceUnreachable) as info:
            api.get_job("x")
        assert str(info.value) == f"no ragserve service at {url}: start it with `ragserve serve`"
        with pytest.raises(ServiceUnreachable):
            list(api.stream_events("x"))


# --------------------------------------------------------------------------- the CLI's live answer


def console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=120, color_system=None, force_terminal=False), buffer


def test_stream_answer_prints_tokens_across_a_drop_and_returns_job(client: ApiClient) -> None:
    out, buffer = console()
    body = stream_answer(client, "drop-plain", out)
    assert buffer.getvalue() == "Hello world [1]\n"
    assert body == job_body("drop-plain")


def test_stream_answer_restarts_on_retry(client: ApiClient) -> None:
    out, buffer = console()
    stream_answer(client, "retry", out)
    assert buffer.getvalue() == (
        "Lost words\nattempt 2 started: the answer restarts\nFresh [answer]\n"
    )


def test_stream_answer_prints_answer_when_nothing_streamed(client: ApiClient) -> None:
    out, buffer = console()
    stream_answer(client, "cached", out)
    assert buffer.getvalue() == "From the cache.\n"


def test_stream_answer_reports_cancellation(client: ApiClient) -> None:
    out, buffer = console()
    stream_answer(client, "cancelled", out)
    assert buffer.getvalue() == "Half\ncancelled\n"
