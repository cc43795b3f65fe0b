"""The CLI's HTTP client: the SSE parser on raw bytes, and ApiClient against a real HTTP server.

The server is a tiny scripted Starlette app on uvicorn in a thread (not a mock transport), so
the resume path is exercised on a real dropped TCP connection: the same ``RemoteProtocolError``
a killed API replica or a proxy timeout produces.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ragserve.client import (
    ApiClient,
    ApiError,
    ServiceUnreachable,
    SseEvent,
    SseParser,
    StreamInterrupted,
    is_terminal_event,
    print_job,
    print_job_table,
    print_sources,
    stream_answer,
)

# --------------------------------------------------------------------------- parser


def parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_multiline_data_event_and_id() -> None:
    events = parse(b"id: 7\nevent: token\ndata: first\ndata: second\ndata:\n\n")
    assert events == [SseEvent(event="token", data="first\nsecond\n", id="7")]


def test_default_event_type_and_space_handling() -> None:
    events = parse(b"data:no space\n\ndata:  two spaces\n\ndata\n\n")
    assert [e.event for e in events] == ["message"] * 3
    assert [e.data for e in events] == ["no space", " two spaces", ""]


def test_crlf_and_cr_line_endings() -> None:
    events = parse(b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r")
    assert [(e.event, e.data) for e in events] == [("a", "1"), ("b", "2")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # A CR at the end of a chunk and the LF at the start of the next are one line end, not two
    # (two would dispatch an event early and lose the 'event' field of the next line).
    events = parse(b"data: x\r", b"\nevent: e\r", b"\ndata: y\r\n\r\n")
    assert [(e.event, e.data) for e in events] == [("e", "x\ny")]


def test_comments_and_events_without_data_are_not_dispatched() -> None:
    events = parse(b": keep-alive\n\n:another\nevent: status\n\nid: 3\n\ndata: d\n\n")
    assert events == [SseEvent(event="message", data="d", id="3")]


def test_id_carries_over_to_later_events() -> None:
    events = parse(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\x00x\ndata: d\n\n")
    # 'id' with no value resets to empty; an id containing NUL is ignored
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1"), ("c", ""), ("d", "")]


def test_retry_field_and_bom() -> None:
    parser = SseParser()
    events = parser.feed("\ufeffretry: 1500\nretry: x\ndata: a\n\n".encode())
    assert events[0].data == "a"
    assert parser.retry_ms == 1500


def test_byte_by_byte_feed_equals_whole_feed() -> None:
    body = (
        'id: 1\r\nevent: token\r\ndata: {"text": "文档中没有"}\r\n\r\n'
        ': ping\n\nid: 2\nevent: done\ndata: {"result":\ndata: null}\n\n'
    ).encode()
    whole = parse(body)
    one_by_one = parse(*(body[i : i + 1] for i in range(len(body))))
    assert whole == one_by_one
    assert whole[0].json() == {"text": "文档中没有"}
    assert whole[1].json() == {"result": None}
    assert [e.id for e in whole] == ["1", "2"]


def test_unterminated_event_is_discarded() -> None:
    parser = SseParser()
    assert parser.feed(b"id: 1\ndata: complete\n\nid: 2\ndata: half") == [
        SseEvent(data="complete", id="1")
    ]
    # the id line of the half event was read, so a resume would skip it: the client must use
    # the id of the last *dispatched* event, which stream_events does
    assert parser.last_event_id == "2"


@pytest.mark.parametrize(
    ("event", "data", "terminal"),
    [
        ("done", "{}", True),
        ("error", "{}", True),
        ("status", '{"status": "cancelled", "attempt": 1}', True),
        ("status", '{"status": "running", "attempt": 1}', False),
        ("token", '{"text": "x", "attempt": 1}', False),
    ],
)
def test_terminal_events(event: str, data: str, terminal: bool) -> None:
    assert is_terminal_event(SseEvent(event=event, data=data)) is terminal


# --------------------------------------------------------------------------- scripted server


def frame(seq: int, event: str, data: dict[str, Any]) -> bytes:
    return f"id: {seq}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


def job_body(job_id: str, status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": job_id,
        "kind": "query",
        "status": status,
        "query": "what is ragserve?",
        "collection": "default",
        "attempts": 1,
        "created_at": "2025-01-01T00:00:00Z",
        "started_at": "2025-01-01T00:00:01Z",
        "finished_at": "2025-01-01T00:00:02Z",
        "cached": False,
        "result": {
            "answer": "A service [1]",
            "sources": [
                {
                    "document_id": "d1",
                    "source": "guide.md",
                    "chunk_id": "c1",
                    "score": 0.91,
                    "text": "ragserve is a service.",
                    "metadata": {},
                }
            ],
        },
        "error": None,
    }
    return body | extra


SOURCES = {"sources": [{"source": "guide.md"}], "attempt": 1}
SCRIPTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "plain": [
        ("status", {"status": "queued", "attempt": 0}),
        ("status", {"status": "running", "attempt": 1}),
        ("sources", SOURCES),
        ("token", {"text": "Hello", "attempt": 1}),
        ("token", {"text": " world", "attempt": 1}),
        ("token", {"text": " [1]", "attempt": 1}),
        ("done", {"result": {"answer": "Hello world [1]"}}),
    ],
    "retry": [
        ("status", {"status": "running", "attempt": 1}),
        ("token", {"text": "Lost", "attempt": 1}),
        ("token", {"text": " words", "attempt": 1}),
        ("status", {"status": "running", "attempt": 2}),
        ("token", {"text": "Fresh", "attempt": 2}),
        ("token", {"text": " [answer]", "attempt": 2}),
        ("done", {"result": {"answer": "Fresh [answer]"}}),
    ],
    "cached": [
        ("status", {"status": "succeeded", "attempt": 0}),
        ("done", {"result": {"answer": "From the cache."}}),
    ],
}


class ScriptedService:
    """A stand-in for the ragserve API: scripted event streams and canned job endpoints.

    Job ids pick the behaviour of ``/events``: ``<script>`` streams a script whole;
    ``drop-<script>`` breaks the TCP connection mid-event after 3 events on the first
    connection; ``eof-<script>`` ends the body cleanly after 2 events (the job is still
    running); ``slow-<script>`` stalls after 2 events on the first connection; ``dead`` always
    breaks; ``over`` ends at once (the job has finished).
    """

    def __init__(self) -> None:
        self.resume_headers: dict[str, list[str | None]] = {}
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/jobs", self.submit, methods=["POST"]),
                Route("/v1/jobs", self.list_jobs, methods=["GET"]),
                Route("/v1/jobs/{job_id}", self.get_job, methods=["GET"]),
                Route("/v1/jobs/{job_id}/cancel", self.cancel, methods=["POST"]),
                Route("/v1/jobs/{job_id}/retry", self.retry, methods=["POST"]),
                Route("/v1/jobs/{job_id}/events", self.events, methods=["GET"]),
                Route("/v1/ask", self.ask, methods=["POST"]),
            ]
        )

    async def submit(self, request: Request) -> Response:
        body = await request.json()
        if not body.get("query"):
            detail = [{"loc": ["body", "query"], "msg": "Field required", "type": "missing"}]
            return JSONResponse({"detail": detail}, status_code=422)
        job_id = request.headers.get("Idempotency-Key") or "j-new"
        echo = {"job_id": job_id, "status": "queued", "echo": body}
        return JSONResponse(echo, status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})

    async def ask(self, request: Request) -> Response:
        body = await request.json()
        if body["wait_s"] > 0:
            return JSONResponse(job_body("j-asked", query=body["query"]))
        return JSONResponse({"job_id": "j-asked", "status": "queued"}, status_code=202)

    async def list_jobs(self, request: Request) -> Response:
        status = request.query_params.get("status", "succeeded")
        limit = int(request.query_params["limit"])
        return JSONResponse({"jobs": [job_body(f"j{i}", status) for i in range(limit)]})

    async def get_job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if job_id == "missing":
            return not_found(job_id)
        # jobs whose stream ends early are still running, so the client must resume
        return JSONResponse(
            job_body(job_id, "running" if job_id.startswith("eof-") else "succeeded")
        )

    async def cancel(self, request: Request) -> Response:
        return JSONResponse(job_body(request.path_params["job_id"], "cancelled", result=None))

    async def retry(self, request: Request) -> Response:
        error = {"type": "Conflict", "message": "job is succeeded, not failed or cancelled"}
        return JSONResponse({"error": error}, status_code=409)

    async def events(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        last = request.headers.get("last-event-id")
        with self.lock:
            seen = self.resume_headers.setdefault(job_id, [])
            seen.append(last)
            first_connection = len(seen) == 1
        mode, _, name = job_id.rpartition("-")
        if job_id == "over":  # a resume after the terminal event: nothing to send
            return sse(self._whole([]))
        if name not in SCRIPTS and job_id != "dead":
            return not_found(job_id)
        script = SCRIPTS.get(name, [])
        start = int(last) if last else 0
        frames = [frame(i, e, d) for i, (e, d) in enumerate(script, start=1)][start:]
        if mode == "drop" and first_connection:
            return sse(self._then_break(frames[:3], partial=frames[3][:15]))
        if mode == "eof" and first_connection:
            frames = frames[:2]
        if mode == "slow" and first_connection:
            return sse(self._then_stall(frames[:2]))
        if job_id == "dead":
            return sse(self._then_break([b": hello\n\n"], partial=b""))
        return sse(self._whole(frames))

    @staticmethod
    async def _whole(frames: list[bytes]) -> AsyncIterator[bytes]:
        yield b": keep-alive\n\n"
        for item in frames:
            yield item

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


def not_found(job_id: str) -> JSONResponse:
    error = {"type": "NotFound", "message": f"no job {job_id}"}
    return JSONResponse({"error": error}, status_code=404)


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, ScriptedService]]:
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
    yield f"http://127.0.0.1:{port}", scripted
    server.should_exit = True
    thread.join(5)
    sock.close()


@pytest.fixture
def client(service: tuple[str, ScriptedService]) -> Iterator[ApiClient]:
    with ApiClient(service[0], timeout=5, reconnect_delay_s=0.01, max_reconnects=2) as api:
        yield api


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- client


def test_stream_whole(client: ApiClient, service: tuple[str, ScriptedService]) -> None:
    events = list(client.stream_events("plain"))
    assert [e.id for e in events] == [str(i) for i in range(1, 8)]
    assert events[-1].event == "done"
    assert service[1].resume_headers["plain"] == [None]


def test_stream_resumes_after_connection_drop(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    events = list(client.stream_events("drop-plain"))
    # no loss and no duplicate, although event 4 was half-sent before the drop
    assert [e.id for e in events] == [str(i) for i in range(1, 8)]
    assert "".join(e.json()["text"] for e in events if e.event == "token") == "Hello world [1]"
    assert service[1].resume_headers["drop-plain"] == [None, "3"]


def test_stream_resumes_after_clean_end_without_terminal_event(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    events = list(client.stream_events("eof-plain"))
    assert [e.id for e in events] == [str(i) for i in range(1, 8)]
    assert service[1].resume_headers["eof-plain"] == [None, "2"]


def test_stream_ends_when_resumed_after_terminal_event(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    assert list(client.stream_events("over", last_event_id="7")) == []
    assert service[1].resume_headers["over"] == ["7"]


def test_stream_reconnects_after_read_timeout_without_spending_budget(
    service: tuple[str, ScriptedService],
) -> None:
    url, scripted = service
    with ApiClient(url, max_reconnects=0, stream_read_timeout=0.3) as api:
        events = list(api.stream_events("slow-plain"))
    assert [e.id for e in events] == [str(i) for i in range(1, 8)]
    assert scripted.resume_headers["slow-plain"] == [None, "2"]


def test_stream_starts_after_given_last_event_id(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    events = list(client.stream_events("eof-retry", last_event_id="5"))
    assert [e.id for e in events] == ["6", "7"]
    assert service[1].resume_headers["eof-retry"] == ["5"]


def test_stream_gives_up_after_reconnect_budget(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    with pytest.raises(StreamInterrupted):
        list(client.stream_events("dead"))
    assert len(service[1].resume_headers["dead"]) == 3  # first try + max_reconnects


def test_stream_unknown_job_is_api_error_without_retry(
    client: ApiClient, service: tuple[str, ScriptedService]
) -> None:
    with pytest.raises(ApiError) as info:
        list(client.stream_events("nope"))
    assert (info.value.status, info.value.type) == (404, "NotFound")
    assert service[1].resume_headers["nope"] == [None]


def test_submit_get_list_cancel(client: ApiClient) -> None:
    accepted = client.submit("q?", "docs", 6, filters={"lang": "en"}, idempotency_key="k1")
    assert accepted["job_id"] == "k1"
    assert accepted["echo"] == {
        "query": "q?",
        "collection": "docs",
        "top_k": 6,
        "document_scope": None,
        "filters": {"lang": "en"},
    }
    assert client.get_job("j1")["status"] == "succeeded"
    jobs = client.list_jobs(status="failed", limit=3)
    assert [j["status"] for j in jobs] == ["failed"] * 3
    assert client.cancel("j1")["status"] == "cancelled"


def test_ask_waits_or_accepts(client: ApiClient) -> None:
    status, job = client.ask("q?", wait_s=5)
    assert (status, job["status"], job["query"]) == (200, "succeeded", "q?")
    status, accepted = client.ask("q?", wait_s=0)
    assert (status, accepted["status"]) == (202, "queued")


def test_api_errors_are_typed(client: ApiClient) -> None:
    with pytest.raises(ApiError) as missing:
        client.get_job("missing")
    assert (missing.value.status, missing.value.type) == (404, "NotFound")
    with pytest.raises(ApiError) as conflict:
        client.retry("j1")
    assert conflict.value.status == 409
    assert "not failed" in conflict.value.message
    with pytest.raises(ApiError) as invalid:
        client.submit("", "default", 4)
    assert invalid.value.status == 422
    assert invalid.value.message == "query: Field required"


def test_service_unreachable_on_closed_port() -> None:
    url = closed_port_url()
    with ApiClient(url, timeout=2) as api:
        with pytest.raises(ServiceUnreachable) as info:
            api.get_job("x")
        assert str(info.value) == f"no ragserve service at {url}: start it with `ragserve serve`"
        with pytest.raises(ServiceUnreachable):
            list(api.stream_events("x"))


# --------------------------------------------------------------------------- rendering


def console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=120, color_system=None, force_terminal=False), buffer


def test_stream_answer_prints_tokens_and_returns_job(client: ApiClient) -> None:
    out, buffer = console()
    job = stream_answer(client, "drop-plain", out)
    assert buffer.getvalue() == "Hello world [1]\n"
    assert job["job_id"] == "drop-plain"


def test_stream_answer_resets_on_retry(client: ApiClient) -> None:
    out, buffer = console()
    stream_answer(client, "retry", out)
    assert buffer.getvalue() == (
        "Lost words\nattempt 2 started: the answer restarts\nFresh [answer]\n"
    )


def test_stream_answer_prints_answer_when_nothing_streamed(client: ApiClient) -> None:
    out, buffer = console()
    stream_answer(client, "cached", out)
    assert buffer.getvalue() == "From the cache.\n"


def test_print_helpers_render_job_fields() -> None:
    out, buffer = console()
    job = job_body("j-42")
    print_job(job, out)
    print_sources(job, out)
    failed = job_body("j-43", "failed", result=None, error={"type": "X", "message": "boom"})
    print_job(failed, out)
    print_job_table([job, failed], out)
    text = buffer.getvalue()
    for expected in ("j-42", "j-43", "A service [1]", "guide.md", "0.910", "X: boom", "failed"):
        assert expected in text
