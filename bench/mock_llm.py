"""A mock OpenAI-compatible LLM server with realistic timing, for benchmarks and tests.

Run it::

    python bench/mock_llm.py --host 127.0.0.1 --port 9000 --ttft 0.5 --tps 50 \\
        --max-concurrency 64 --error-rate 0.0 [--error-status 503] [--seed N]

and point ragserve at it with ``RAGSERVE_LLM_BASE_URL=http://127.0.0.1:9000/v1``. ``--port 0``
picks a free port; the first line printed on stdout is always ``mock LLM listening on
http://HOST:PORT/v1``, so a parent process can read the address from it.

Or import it: ``create_app(MockConfig(...))`` returns the ASGI app.

Endpoints
---------
``GET /v1/models``
    Lists the one configured model.
``POST /v1/chat/completions``
    ``stream: false`` returns a ``chat.completion``; ``stream: true`` returns Server-Sent Events
    ``data: {chat.completion.chunk}`` (the first chunk carries ``role``, the last one
    ``finish_reason``), then ``data: [DONE]``. With ``stream_options.include_usage`` a
    usage-only chunk precedes ``[DONE]``, as with OpenAI. ``max_tokens`` (or
    ``max_completion_tokens``) truncates the answer with ``finish_reason: "length"``.
``POST /admin/config``
    A JSON object with some of the fields of :class:`MockConfig`; changes them at run time and
    returns the whole configuration. ``max_concurrency`` changes take effect at once.
``GET /admin/stats``
    Counters: ``requests_total`` (received), ``requests_served`` (completed), ``requests_failed``
    (error responses), ``requests_cancelled`` (client went away), ``in_flight`` (generating now),
    ``waiting`` (queued for a generation slot), ``max_in_flight`` (highest ``in_flight`` seen),
    ``prompt_tokens`` and ``completion_tokens`` (sums of the ``usage`` of the completed
    requests, whether or not it was sent to the client).
``POST /admin/reset-stats``
    Zeroes the counters (``max_in_flight`` restarts from the current ``in_flight``).

Behaviour
---------
Timing: a request first waits for one of ``max_concurrency`` generation slots (extra requests
queue, like on a real inference server with a full batch), then waits ``ttft`` seconds (prefill)
before its first token, then emits ``tps`` tokens per second. The slot is held until the last
token is sent or the client disconnects. A non-streamed request takes the same time and then
answers at once.

Errors: with probability ``error_rate`` (drawn from a generator seeded with ``seed``) a request
fails at once, before queueing, with ``error_status`` and an OpenAI-style body
``{"error": {"message", "type", "param", "code"}}`` (429 also sets ``Retry-After``). Bad requests
get real 4xx answers: invalid JSON or missing/empty ``messages`` -> 400; with ``strict_model``,
a model other than ``model`` -> 404 ``model_not_found``.

Answer content is deterministic and derived from the request, so tests can predict it. It reads
the last ``user`` message, expected in the format of ``ragserve.rag.prompts`` (numbered
passages, each starting with a header line ``[1] (source: ...)``):

* if passage ``[1]`` is present: the first sentence of its text (up to the first ``. ! ?``
  followed by white space, or ``。！？``) followed by `` [1]``;
* otherwise: "The documents do not contain the answer." (or "文档中没有找到答案。" when the
  user message contains Chinese characters).

Tokens are words with their leading white space, and single CJK characters, so the
concatenation of all streamed pieces is exactly the non-streamed content.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import random
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

NOT_FOUND_EN = "The documents do not contain the answer."
NOT_FOUND_ZH = "文档中没有找到答案。"

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"\s*[{_CJK}]|\s*[^\s{_CJK}]+|\s+")
_FIRST_PASSAGE = re.compile(r"^\[1\][^\n]*\n(?P<text>.*?)(?=\n\s*\n|\Z)", re.M | re.S)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|[。！？]")


@dataclass
class MockConfig:
    """Everything that shapes the mock's behaviour; all but host/port can change at run time."""

    ttft: float = 0.5
    """Seconds from getting a generation slot to the first token."""
    tps: float = 50.0
    """Tokens per second after the first one."""
    max_concurrency: int = 64
    """Requests generating at once; more requests wait for a slot."""
    error_rate: float = 0.0
    """Probability that a request fails at once with ``error_status``."""
    error_status: int = 503
    seed: int | None = None
    """Seed of the error draws; None = nondeterministic."""
    model: str = "mock-llm"
    """The model ``/v1/models`` lists and responses report."""
    strict_model: bool = False
    """Reject (404) requests for any model other than ``model``; otherwise accept every name."""

    def validate(self) -> None:
        """Raise ValueError on values the server cannot work with."""
        if self.ttft < 0:
            raise ValueError("ttft must be >= 0")
        if self.tps <= 0:
            raise ValueError("tps must be > 0")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if not 400 <= self.error_status <= 599:
            raise ValueError("error_status must be an HTTP error status (400-599)")


# --------------------------------------------------------------------------- answer content


def tokenize(text: str) -> list[str]:
    """Split into stream tokens: words with their leading space, single CJK characters."""
    return _TOKEN.findall(text)


def first_sentence(text: str) -> str:
    """The text up to and including the first sentence-ending mark (all of it if none)."""
    text = " ".join(text.split())
    match = _SENTENCE_END.search(text)
    return text[: match.end()] if match else text


def answer_for(messages: Sequence[dict[str, Any]]) -> str:
    """The deterministic answer described in the module docstring."""
    user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    content = _text_of(user.get("content")) if user else ""
    match = _FIRST_PASSAGE.search(content)
    if match and match.group("text").strip():
        return f"{first_sentence(match.group('text'))} [1]"
    return NOT_FOUND_ZH if re.search(f"[{_CJK}]", content) else NOT_FOUND_EN


def _text_of(content: Any) -> str:
    """Message content as text; OpenAI also allows a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


# --------------------------------------------------------------------------- server state


class _Slots:
    """A counting limiter like ``asyncio.Semaphore`` whose size can change while in use."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._used = 0
        self._changed = asyncio.Condition()

    @property
    def used(self) -> int:
        return self._used

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._used < self._size)
            self._used += 1

    async def release(self) -> None:
        async with self._changed:
            self._used -= 1
            self._changed.notify_all()

    async def resize(self, size: int) -> None:
        async with self._changed:
            self._size = size
            self._changed.notify_all()


@dataclass
class _Stats:
    requests_total: int = 0
    requests_served: int = 0
    requests_failed: int = 0
    requests_cancelled: int = 0
    in_flight: int = 0
    waiting: int = 0
    max_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def served(self, usage: dict[str, int]) -> None:
        self.requests_served += 1
        self.prompt_tokens += usage["prompt_tokens"]
        self.completion_tokens += usage["completion_tokens"]


class _MockState:
    """Per-app mutable state (config, slots, counters), created by :func:`create_app`."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.stats = _Stats()
        self.ids = itertools.count(1)
        self._slots: _Slots | None = None  # needs the server's event loop

    @property
    def slots(self) -> _Slots:
        if self._slots is None:
            self._slots = _Slots(self.config.max_concurrency)
        return self._slots

    async def enter(self) -> None:
        """Wait for a generation slot and count the request as in flight."""
        self.stats.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.stats.waiting -= 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)

    async def leave(self) -> None:
        self.stats.in_flight -= 1
        await self.slots.release()


# --------------------------------------------------------------------------- handlers


def _error(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
    """An OpenAI-style error response."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    headers = {"Retry-After": "1"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _injected_error(status: int) -> JSONResponse:
    if status == 429:
        return _error(status, "Rate limit reached (injected by mock).", "rate_limit_exceeded")
    if status >= 500:
        return _error(status, f"Mock server error {status} (injected).", "server_error")
    return _error(status, f"Mock client error {status} (injected).", "invalid_request_error")


async def _models(request: Request) -> Response:
    state: _MockState = request.app.state.mock
    model = {"id": state.config.model, "object": "model", "created": 0, "owned_by": "mock"}
    return JSONResponse({"object": "list", "data": [model]})


async def _chat_completions(request: Request) -> Response:
    state: _MockState = request.app.state.mock
    config = state.config
    state.stats.requests_total += 1
    rejection = _validate_chat(await request.body(), config)
    if isinstance(rejection, Response):
        state.stats.requests_failed += 1
        return rejection
    body = rejection
    if config.error_rate and state.rng.random() < config.error_rate:
        state.stats.requests_failed += 1
        return _injected_error(config.error_status)

    tokens = tokenize(answer_for(body["messages"]))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish_reason = "stop"
    if isinstance(limit, int) and len(tokens) > limit:
        tokens, finish_reason = tokens[:limit], "length"
    reply = _Reply(
        id=f"chatcmpl-mock-{next(state.ids)}",
        model=str(body.get("model") or config.model),
        created=int(time.time()),
        tokens=tokens,
        finish_reason=finish_reason,
        prompt_tokens=sum(len(tokenize(_text_of(m.get("content")))) for m in body["messages"]),
    )
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _sse(state, reply, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    try:
        async for _ in _generate(state, reply.tokens):
            pass
    except asyncio.CancelledError:
        state.stats.requests_cancelled += 1
        raise
    state.stats.served(reply.usage())
    return JSONResponse(reply.completion())


def _validate_chat(raw: bytes, config: MockConfig) -> dict[str, Any] | Response:
    """The parsed request body, or the 4xx response a real server would give."""
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "Request body is not valid JSON.", "invalid_request_error")
    if not isinstance(body, dict):
        return _error(400, "Request body must be a JSON object.", "invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(
            400, "'messages' must be a non-empty array.", "invalid_request_error", "invalid_value"
        )
    if not all(isinstance(m, dict) and "role" in m for m in messages):
        return _error(400, "Each message needs a 'role'.", "invalid_request_error")
    if config.strict_model and body.get("model") != config.model:
        return _error(
            404,
            f"The model `{body.get('model')}` does not exist.",
            "invalid_request_error",
            "model_not_found",
        )
    return body


@dataclass
class _Reply:
    """One generated answer and the metadata its JSON shapes need."""

    id: str
    model: str
    created: int
    tokens: list[str]
    finish_reason: str
    prompt_tokens: int

    def usage(self) -> dict[str, int]:
        completion = len(self.tokens)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def completion(self) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(self.tokens)}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage(),
        }

    def chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }


async def _generate(state: _MockState, tokens: Sequence[str]) -> AsyncIterator[str]:
    """Hold a slot and release the tokens on schedule: ``ttft``, then ``1/tps`` apart.

    Deadlines are absolute (from the slot's start), so timer drift does not accumulate, and
    ttft/tps are read once so a config change affects the next request, not this one.
    """
    await state.enter()
    try:
        loop = asyncio.get_running_loop()
        ttft, tps = state.config.ttft, state.config.tps
        start = loop.time()
        for i, token in enumerate(tokens):
            delay = start + ttft + i / tps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield token
        if not tokens and ttft > 0:
            await asyncio.sleep(ttft)
    finally:
        await state.leave()


async def _sse(state: _MockState, reply: _Reply, include_usage: bool) -> AsyncIterator[str]:
    """The event stream of one streamed completion."""

    def event(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    try:
        first = True
        async for token in _generate(state, reply.tokens):
            if first:
                # OpenAI's first chunk carries the role; it is sent with the first token so
                # that time-to-first-byte equals time-to-first-token.
                yield event(reply.chunk({"role": "assistant", "content": ""}))
                first = False
            yield event(reply.chunk({"content": token}))
        if first:
            yield event(reply.chunk({"role": "assistant", "content": ""}))
        yield event(reply.chunk({}, reply.finish_reason))
        if include_usage:
            usage_chunk = reply.chunk({}) | {"choices": [], "usage": reply.usage()}
            yield event(usage_chunk)
        yield "data: [DONE]\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        state.stats.requests_cancelled += 1
        raise
    state.stats.served(reply.usage())


def _checked_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Check names and JSON types of a partial config; ValueError names the bad field."""
    kinds: dict[str, tuple[type, ...]] = {
        "ttft": (int, float),
        "tps": (int, float),
        "error_rate": (int, float),
        "max_concurrency": (int,),
        "error_status": (int,),
        "seed": (int, type(None)),
        "model": (str,),
        "strict_model": (bool,),
    }
    for name, value in changes.items():
        if name not in kinds:
            raise ValueError(f"unknown config field {name!r}; known: {sorted(kinds)}")
        if isinstance(value, bool) != (kinds[name] == (bool,)) or not isinstance(
            value, kinds[name]
        ):
            raise ValueError(f"config field {name!r} has the wrong type: {value!r}")
    return changes


async def _admin_config(request: Request) -> Response:
    state: _MockState = request.app.state.mock
    try:
        changes = json.loads(await request.body() or b"{}")
    except ValueError:
        return _error(400, "Body must be a JSON object.", "invalid_request_error")
    if not isinstance(changes, dict):
        return _error(400, "Body must be a JSON object.", "invalid_request_error")
    try:
        updated = dataclasses.replace(state.config, **_checked_changes(changes))
        updated.validate()
    except ValueError as exc:
        return _error(400, str(exc), "invalid_request_error")
    if "seed" in changes:
        state.rng.seed(updated.seed)
    if updated.max_concurrency != state.config.max_concurrency:
        await state.slots.resize(updated.max_concurrency)
    state.config = updated
    return JSONResponse(dataclasses.asdict(updated))


async def _admin_stats(request: Request) -> Response:
    state: _MockState = request.app.state.mock
    return JSONResponse(dataclasses.asdict(state.stats))


async def _admin_reset_stats(request: Request) -> Response:
    state: _MockState = request.app.state.mock
    stats = state.stats
    state.stats = _Stats(
        in_flight=stats.in_flight, waiting=stats.waiting, max_in_flight=stats.in_flight
    )
    return JSONResponse(dataclasses.asdict(state.stats))


def create_app(config: MockConfig | None = None) -> Starlette:
    """The mock as an ASGI app; each app has its own state, so several can run in one process."""
    config = config or MockConfig()
    config.validate()
    app = Starlette(
        routes=[
            Route("/v1/models", _models, methods=["GET"]),
            Route("/v1/chat/completions", _chat_completions, methods=["POST"]),
            Route("/admin/config", _admin_config, methods=["POST"]),
            Route("/admin/stats", _admin_stats, methods=["GET"]),
            Route("/admin/reset-stats", _admin_reset_stats, methods=["POST"]),
        ]
    )
    app.state.mock = _MockState(dataclasses.replace(config))
    return app


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    defaults = MockConfig()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--ttft", type=float, default=defaults.ttft, help="seconds")
    parser.add_argument("--tps", type=float, default=defaults.tps, help="tokens per second")
    parser.add_argument("--max-concurrency", type=int, default=defaults.max_concurrency)
    parser.add_argument("--error-rate", type=float, default=defaults.error_rate)
    parser.add_argument("--error-status", type=int, default=defaults.error_status)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--strict-model", action="store_true")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = MockConfig(
        ttft=args.ttft,
        tps=args.tps,
        max_concurrency=args.max_concurrency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        seed=args.seed,
        model=args.model,
        strict_model=args.strict_model,
    )
    try:
        app = create_app(config)
    except ValueError as exc:
        sys.exit(f"mock_llm: {exc}")
    # Bind here (not in uvicorn) so that --port 0 works and the real port can be announced.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    print(f"mock LLM listening on http://{netloc}/v1", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level=args.log_level, access_log=False, timeout_keep_alive=30)
    )
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
