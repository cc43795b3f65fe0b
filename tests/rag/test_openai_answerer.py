"""OpenAIChatAnswerer against the mock LLM server (bench/mock_llm.py) over real HTTP.

The mock runs as a real subprocess on a free port of 127.0.0.1; each test sets the behaviour
it needs through the mock's ``/admin/config`` endpoint. Malformed streams, which the mock
never sends, come from a small aiohttp server in the test that answers a fixed body.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from langchain_core.messages import convert_to_openai_messages

from ragserve.errors import InvalidInput, ProviderError, TransientProviderError
from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers.openai import OpenAIChatAnswerer, _sse_data
from ragserve.rag.prompts import (
    NOT_FOUND_EN,
    NOT_FOUND_ZH,
    answer_prompt,
    build_messages,
    prompt_inputs,
)
from ragserve.settings import Settings
from support import MockLLM, start_mock_llm

BASELINE = {
    "ttft": 0.05,
    "tps": 400.0,
    "max_concurrency": 64,
    "error_rate": 0.0,
    "error_status": 503,
    "strict_model": False,
}
CHUNKS = [
    RetrievedChunk(
        chunk_id="c1",
        document_id="d1",
        source="handbook.md",
        text="Employees get 25 days of paid leave per year. Unused days expire in March.",
        score=0.9,
    ),
    RetrievedChunk(
        chunk_id="c2",
        document_id="d2",
        source="faq.md",
        text="The office opens at 9 am.",
        score=0.5,
    ),
]
EXPECTED = "Employees get 25 days of paid leave per year. [1]"
QUESTION = "How many days of paid leave do employees get?"


@pytest.fixture(scope="module")
def seeded_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLM]:
    """A mock LLM of this module's own (fixed seed; tests change its behaviour freely)."""
    proc, mock = start_mock_llm(tmp_path_factory.mktemp("mock-llm") / "mock.log", "--seed", "7")
    yield mock
    proc.stop()


@pytest.fixture
def llm(seeded_llm: MockLLM) -> MockLLM:
    """The mock, reset to fast, error-free defaults with zeroed counters."""
    seeded_llm.configure(**BASELINE)
    seeded_llm.reset_stats()
    return seeded_llm


def _answerer(base_url: str, **kwargs: Any) -> OpenAIChatAnswerer:
    options: dict[str, Any] = {"model": "mock-llm", "timeout_s": 5.0} | kwargs
    return OpenAIChatAnswerer(base_url=base_url, **options)


async def _collect(answerer: OpenAIChatAnswerer) -> list[str]:
    try:
        async with aclosing(answerer.stream(QUESTION, CHUNKS)) as stream:
            return [piece async for piece in stream]
    finally:
        await answerer.aclose()


async def test_stream_joins_to_the_non_streamed_answer(llm: MockLLM) -> None:
    pieces = await _collect(_answerer(llm.base_url))

    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{llm.base_url}/chat/completions",
            json={"model": "mock-llm", "messages": build_messages(QUESTION, CHUNKS)},
        )
    full = response.json()["choices"][0]["message"]["content"]
    assert len(pieces) > 3
    assert "".join(pieces) == full == EXPECTED
    stats = llm.stats()
    assert stats["requests_served"] == 2


async def test_base_url_with_trailing_slash(llm: MockLLM) -> None:
    assert "".join(await _collect(_answerer(llm.base_url + "/"))) == EXPECTED


async def test_server_error_is_transient(llm: MockLLM) -> None:
    llm.configure(error_rate=1.0, error_status=503)
    with pytest.raises(TransientProviderError, match="503") as info:
        await _collect(_answerer(llm.base_url))
    assert "injected" in str(info.value)  # the server's own error message is kept
    assert info.value.retryable


async def test_rate_limit_is_transient(llm: MockLLM) -> None:
    llm.configure(error_rate=1.0, error_status=429)
    with pytest.raises(TransientProviderError, match="429"):
        await _collect(_answerer(llm.base_url))


async def test_bad_request_is_permanent(llm: MockLLM) -> None:
    llm.configure(error_rate=1.0, error_status=400)
    with pytest.raises(ProviderError, match="400") as info:
        await _collect(_answerer(llm.base_url))
    assert not isinstance(info.value, TransientProviderError)
    assert not info.value.retryable


async def test_unknown_model_is_permanent(llm: MockLLM) -> None:
    llm.configure(strict_model=True)
    with pytest.raises(ProviderError, match=r"404.*bad-model") as info:
        await _collect(_answerer(llm.base_url, model="bad-model"))
    assert not isinstance(info.value, TransientProviderError)


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # the socket is closed again: nothing listens on that port
    with pytest.raises(TransientProviderError, match="unreachable"):
        await _collect(_answerer(f"http://127.0.0.1:{port}/v1"))


async def test_read_timeout_is_transient_and_frees_the_server(llm: MockLLM) -> None:
    llm.configure(ttft=3.0)
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="timed out"):
        await _collect(_answerer(llm.base_url, timeout_s=0.3))
    assert time.monotonic() - started < 2.0
    # The mock notices the client went away and releases its generation slot.
    for _ in range(100):
        if llm.stats()["in_flight"] == 0:
            break
        await asyncio.sleep(0.05)
    assert llm.stats()["in_flight"] == 0


async def test_mock_limits_concurrent_generations(llm: MockLLM) -> None:
    llm.configure(max_concurrency=2, ttft=0.15)
    answerer = _answerer(llm.base_url)
    try:

        async def one() -> str:
            return "".join([piece async for piece in answerer.stream(QUESTION, CHUNKS)])

        answers = await asyncio.gather(*(one() for _ in range(6)))
    finally:
        await answerer.aclose()
    assert answers == [EXPECTED] * 6
    stats = llm.stats()
    assert stats["max_in_flight"] == 2
    assert stats["requests_served"] == 6
    assert stats["in_flight"] == stats["waiting"] == 0


def test_name_identifies_model_endpoint_and_sampling() -> None:
    answerer = OpenAIChatAnswerer("http://llm:8000/v1/", "qwen", temperature=0.3)
    assert answerer.name.startswith("openai:qwen@http://llm:8000/v1:t=0.3")
    assert answerer.name != OpenAIChatAnswerer("http://llm:8000/v1", "qwen").name


def test_from_settings() -> None:
    settings = Settings(
        llm_base_url="http://llm:8000/v1", llm_model="m", llm_timeout_s=7, llm_api_key="sk-x"
    )
    answerer = OpenAIChatAnswerer.from_settings(settings)
    assert answerer.model == "m"
    assert answerer._headers["Authorization"] == "Bearer sk-x"  # the secret, unwrapped once
    assert answerer.name.startswith("openai:m@http://llm:8000/v1")
    with pytest.raises(InvalidInput):
        OpenAIChatAnswerer.from_settings(Settings(llm_base_url=None))


def test_prompt_numbers_passages_and_states_the_rules() -> None:
    chunks = [*CHUNKS, RetrievedChunk("c3", "d3", "code.md", "Use {braces} freely.", 0.1)]
    system, user = build_messages("报销 {x} 怎么办？", chunks)
    assert system["role"] == "system" and user["role"] == "user"
    assert NOT_FOUND_EN in system["content"] and NOT_FOUND_ZH in system["content"]
    assert "[1] (source: handbook.md)\nEmployees get 25 days" in user["content"]
    assert "[3] (source: code.md)\nUse {braces} freely." in user["content"]
    assert user["content"].endswith("Question: 报销 {x} 怎么办？")


def test_prompt_messages_are_the_langchain_templates_rendering() -> None:
    chunks = [*CHUNKS, RetrievedChunk("c3", "d3", "code.md", "Use {braces} freely.", 0.1)]
    for question, passages in [("报销 {x} 怎么办？", chunks), ("What is {y}?", []), ("Q", CHUNKS)]:
        rendered = answer_prompt().invoke(prompt_inputs(question, passages))
        assert build_messages(question, passages) == convert_to_openai_messages(
            rendered.to_messages()
        )


def test_rejects_a_base_url_without_scheme() -> None:
    with pytest.raises(InvalidInput):
        OpenAIChatAnswerer("llm:8000/v1", "m")


# --------------------------------------------------------------------------- odd servers


def _sse(*events: str) -> bytes:
    return "".join(f"data: {event}\n\n" for event in events).encode()


def _chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


async def _stream_from(
    body: bytes,
    content_type: str = "text/event-stream",
    api_key: str | None = None,
    seen: list[dict[str, Any]] | None = None,
    http_client: aiohttp.ClientSession | None = None,
) -> list[str]:
    """The pieces the answerer streams from a real server that answers ``body``; ``seen``
    gets each request's path, ``Authorization`` header and JSON payload."""

    async def completions(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(
                {
                    "path": request.path,
                    "authorization": request.headers.get("Authorization"),
                    "payload": await request.json(),
                }
            )
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    answerer = OpenAIChatAnswerer(
        f"http://127.0.0.1:{port}/v1", "m", api_key=api_key, http_client=http_client
    )
    try:
        return [piece async for piece in answerer.stream(QUESTION, CHUNKS)]
    finally:
        await answerer.aclose()
        await runner.cleanup()


async def test_sends_key_and_parses_sse() -> None:
    seen: list[dict[str, Any]] = []
    body = b": keep-alive\n\n" + _sse(_chunk("Hi"), _chunk(" there"), _chunk(None, "stop"))
    body += b"data: [DONE]\n\n"
    assert await _stream_from(body, api_key="sk-test", seen=seen) == ["Hi", " there"]
    request = seen[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer sk-test"
    payload = request["payload"]
    assert payload["stream"] is True and payload["model"] == "m"
    assert [m["role"] for m in payload["messages"]] == ["system", "user"]


async def test_a_session_given_is_used_and_left_open() -> None:
    body = _sse(_chunk("Hi"), _chunk(None, "stop")) + b"data: [DONE]\n\n"
    async with aiohttp.ClientSession() as session:
        assert await _stream_from(body, http_client=session) == ["Hi"]
        assert not session.closed


async def _pieces(body: bytes, size: int) -> list[bytes]:
    async def arriving() -> Any:
        for i in range(0, len(body), size):
            yield body[i : i + size]

    return [data async for data in _sse_data(arriving())]


async def test_sse_lines_end_in_lf_crlf_or_cr_wherever_the_bytes_are_cut() -> None:
    body = (
        b"data: a\r\n\r\n"  # CRLF
        b": comment\nevent: x\nid: 7\ndata\ndata: b\n\n"  # fields ignored; bare "data"
        b"data: \xe4\xbd\xa0\rdata:  d\r\r"  # CR; one space taken, not two
        b"data: last"  # no line end at all
    )
    expected = [b"a", b"\nb", "你".encode() + b"\n d", b"last"]
    for size in (1, 2, 3, 7, len(body)):
        assert await _pieces(body, size) == expected, size


async def test_malformed_event_is_transient() -> None:
    with pytest.raises(TransientProviderError, match="malformed"):
        await _stream_from(_sse(_chunk("Hi"), "{not json"))


async def test_cut_off_stream_is_transient() -> None:
    with pytest.raises(TransientProviderError, match="before"):
        await _stream_from(_sse(_chunk("Hi")))  # no finish_reason, no [DONE]


async def test_json_reply_to_a_stream_request_is_accepted() -> None:
    body = json.dumps({"choices": [{"message": {"content": "Whole."}}]}).encode()
    assert await _stream_from(body, content_type="application/json") == ["Whole."]
