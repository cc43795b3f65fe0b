"""Answers with any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, DeepSeek, Qwen ...).

Plain HTTP (aiohttp, see ``ragserve.kb.http``) instead of the OpenAI SDK: full control over
timeouts and the mapping of failures to ragserve's retryable / permanent errors, which is what
the job queue's retry policy is built on, and a small cost per streamed token.

``base_url`` follows the OpenAI SDK convention and INCLUDES the API version prefix, e.g.
``https://api.openai.com/v1`` or ``http://localhost:11434/v1``; requests go to
``{base_url}/chat/completions``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from ragserve.errors import InvalidInput, ProviderError, TransientProviderError
from ragserve.kb.breaker import CircuitBreaker
from ragserve.kb.http import ModelSession, timeouts
from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers.base import LLMUsage
from ragserve.rag.prompts import PROMPT_VERSION, build_messages
from ragserve.settings import Settings
from ragserve.text import estimate_tokens

_CONNECT_TIMEOUT_CAP_S = 10.0
_MAX_ERROR_CHARS = 500
# 408 (request timeout) and 409 (conflict / lock) are retried by the official SDKs as well.
_TRANSIENT_STATUSES = frozenset({408, 409, 429})


class OpenAIChatAnswerer:
    """Streams ``choices[0].delta.content`` of ``POST {base_url}/chat/completions``.

    Timeouts come from ``timeout_s``: it bounds the wait for the response headers and for each
    next piece of the stream (so a stalled stream fails after ``timeout_s`` without tokens,
    however long the whole answer takes; the job timeout bounds the total). Connecting is
    capped at 10 s so an unreachable host fails fast and the attempt can be retried.

    Every request passes ``breaker`` (see ``ragserve.kb.breaker``): while the endpoint is down,
    requests are refused with ``CircuitOpen`` instead of being sent.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        temperature: float = 0.0,
        max_tokens: int = 512,
        http_client: aiohttp.ClientSession | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """``http_client``: a session of the caller's (kept open by ``aclose``)."""
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"LLM base URL must be http(s)://.../v1, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.name = (
            f"openai:{model}@{self.base_url}:t={temperature}"
            f":max={max_tokens}:prompt={PROMPT_VERSION}"
        )
        self._url = f"{self.base_url}/chat/completions"
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeouts(timeout_s, connect_s=min(timeout_s, _CONNECT_TIMEOUT_CAP_S))
        self._http = ModelSession(self._url, http_client)
        self.breaker = breaker or CircuitBreaker("llm")

    @classmethod
    def from_settings(
        cls, settings: Settings, http_client: aiohttp.ClientSession | None = None
    ) -> OpenAIChatAnswerer:
        """Build from ``RAGSERVE_LLM_*``; ``RAGSERVE_LLM_BASE_URL`` must be set."""
        if not settings.llm_base_url:
            raise InvalidInput("RAGSERVE_LLM_BASE_URL is not set")
        return cls(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            timeout_s=settings.llm_timeout_s,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            http_client=http_client,
            breaker=CircuitBreaker.from_settings("llm", settings),
        )

    def _payload(self, question: str, chunks: Sequence[RetrievedChunk]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": build_messages(question, chunks),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": True,
            # OpenAI, vLLM, Ollama and most others then end the stream with a usage chunk.
            "stream_options": {"include_usage": True},
        }

    async def stream(
        self, question: str, chunks: Sequence[RetrievedChunk], usage: LLMUsage | None = None
    ) -> AsyncIterator[str]:
        """Yield content pieces as the endpoint produces them (see :class:`Answerer`).

        ``usage`` gets the provider's token counts; a provider that reports none (or a
        non-streamed answer without them) is counted with ``ragserve.text.estimate_tokens``.
        """
        payload = self._payload(question, chunks)
        meter = usage if usage is not None else LLMUsage()
        pieces: list[str] = []
        async with self.breaker.guard():
            async for piece in self._request(payload, meter):
                pieces.append(piece)
                yield piece
        if not meter.reported:
            meter.prompt_tokens = sum(
                estimate_tokens(str(m.get("content") or "")) for m in payload["messages"]
            )
            meter.completion_tokens = estimate_tokens("".join(pieces))

    async def _request(self, payload: dict[str, Any], usage: LLMUsage) -> AsyncIterator[str]:
        try:
            async with self._http.post(
                self._url, json=payload, headers=self._headers, timeout=self._timeout
            ) as response:
                if response.status >= 400:
                    raise _status_error(response.status, response.reason, await response.read())
                if response.content_type == "application/json":
                    # The server ignored ``stream: true`` and sent one ChatCompletion.
                    body = await response.read()
                    _read_usage(_parsed(body), usage)
                    yield _completion_content(body)
                    return
                async for piece in _stream_contents(response.content.iter_any(), usage):
                    yield piece
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise TransientProviderError(
                f"LLM endpoint {self._url} timed out ({type(exc).__name__})"
            ) from exc
        except aiohttp.ClientError as exc:  # connection, protocol and decoding failures
            raise TransientProviderError(
                f"LLM endpoint {self._url} unreachable ({type(exc).__name__}: {exc})"
            ) from exc

    async def aclose(self) -> None:
        """Close the HTTP session if this answerer opened it."""
        await self._http.aclose()


async def _stream_contents(body: AsyncIterator[bytes], usage: LLMUsage) -> AsyncIterator[str]:
    """Parse the SSE body: yield non-empty ``delta.content`` until ``data: [DONE]``.

    A stream that ends without ``[DONE]`` and without a ``finish_reason`` was cut off
    (a proxy or the server died), so it is reported as transient rather than accepted as a
    truncated answer.
    """
    finished = False
    async for data in _sse_data(body):
        if data == b"[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError as exc:  # not JSON, or not UTF-8
            raise TransientProviderError(f"malformed stream event: {data[:200]!r}") from exc
        if not isinstance(event, dict):
            raise TransientProviderError(f"malformed stream event: {data[:200]!r}")
        if "error" in event:
            # Some servers (vLLM, Ollama) report failures mid-stream as an error event.
            raise TransientProviderError(f"LLM stream error: {_error_message(event)}")
        _read_usage(event, usage)
        choices = event.get("choices") or []  # usage-only chunks have no choices
        if not choices:
            continue
        choice = choices[0]
        if not isinstance(choice, dict):
            raise TransientProviderError(f"malformed stream event: {data[:200]!r}")
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        if content:
            yield str(content)
        if choice.get("finish_reason"):
            finished = True
    if not finished:
        raise TransientProviderError("LLM stream ended before [DONE]")


async def _sse_data(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The ``data`` payload of each Server-Sent Event (multi-line data joined with newlines),
    from the body's bytes as they arrive.

    Lines end at ``\n``, ``\r\n`` or ``\r`` (the SSE grammar). The bytes stay bytes: UTF-8
    has no newline byte inside a character, and ``json.loads`` reads UTF-8 bytes.
    """
    data: list[bytes] = []
    rest = b""
    async for piece in body:
        lines, rest = _complete_lines(rest + piece)
        for line in lines:
            if line:
                _take_data(line, data)
            elif data:
                yield b"\n".join(data)
                data = []
    if rest:  # a last line without its line end
        _take_data(rest.rstrip(b"\r"), data)
    if data:
        yield b"\n".join(data)


def _take_data(line: bytes, data: list[bytes]) -> None:
    """Add the value of a ``data`` line to ``data``; other fields (``event``, ``id``,
    ``retry``) and comments (``:``, keep-alives) are not used."""
    field, _, value = line.partition(b":")
    if field == b"data":
        data.append(value[1:] if value.startswith(b" ") else value)


def _complete_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of ``buffer``, and what follows the last line end.

    A ``\r`` at the very end is kept back: it may be the first half of a ``\r\n``.
    """
    if b"\r" not in buffer:
        *lines, rest = buffer.split(b"\n")
        return lines, rest
    held = buffer.endswith(b"\r")
    if held:
        buffer = buffer[:-1]
    *lines, rest = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return lines, (rest + b"\r" if held else rest)


def _read_usage(event: Any, usage: LLMUsage) -> None:
    """Take ``usage.prompt_tokens``/``completion_tokens`` of a chunk or completion, if any."""
    reported = event.get("usage") if isinstance(event, dict) else None
    if not isinstance(reported, dict):
        return
    prompt, completion = reported.get("prompt_tokens"), reported.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        usage.prompt_tokens, usage.completion_tokens, usage.reported = prompt, completion, True


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None  # _completion_content reports the malformed body


def _completion_content(body: bytes) -> str:
    """``choices[0].message.content`` of a non-streamed ChatCompletion."""
    try:
        return json.loads(body)["choices"][0]["message"]["content"] or ""
    except (ValueError, LookupError, TypeError) as exc:
        raise TransientProviderError(f"malformed completion: {body[:200]!r}") from exc


def _status_error(status: int, reason: str | None, body: bytes) -> ProviderError:
    """Map an HTTP error status: 408/409/429/5xx may pass on retry, other 4xx will not."""
    try:
        message = _error_message(json.loads(body))
    except ValueError:
        message = body.decode(errors="replace").strip()
    message = (message or reason or "")[:_MAX_ERROR_CHARS]
    text = f"LLM endpoint returned HTTP {status}: {message}"
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return TransientProviderError(text)
    return ProviderError(text)


def _error_message(body: Any) -> str:
    """The human message of an OpenAI-style (or FastAPI-style) error body."""
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error is not None:
            return str(error)
    return json.dumps(body)[:_MAX_ERROR_CHARS]
