"""Driving an app's Runnable and turning what it streams into job events.

Two adapters, one per kind of Runnable (``App.adapter``); the job around them (fencing,
timeout, cancel, retries, result) is the same for both (``ragserve.jobs.runner``):

- ``answer``: the built-in pipeline streams its own events (``sources``, ``token``, then
  ``answer``); they become the answer job's events and its result ``{answer, sources}``.
- ``runnable``: any Runnable, through ``astream_events(version="v2")``: each chunk the Runnable
  itself (the root run) streams becomes a ``chunk`` event, each chat-model token anywhere in it
  a ``token`` event, and its output (the root run's end) the result. ``astream_events`` rather
  than ``astream`` because it alone also sees the tokens of a chat model inside a chain whose
  output is not text (a parser, a graph); bench/apps_overhead.py measures its cost.

Both report what the job cost (``Driven.usage``, counted in the tenant's usage when the result
is stored): the built-in pipeline's ``usage`` on its ``answer`` event; for any other Runnable,
the ``usage_metadata`` of every chat model call in it that reports one (none: the job counts,
its tokens are 0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.runnables import Runnable, RunnableConfig

from ragserve.errors import RagserveError
from ragserve.jobs.app_output import to_json
from ragserve.jobs.usage import TokenUsage


class EventSink(Protocol):
    """Where a driver writes the job's events (``ragserve.jobs.runner.EventWriter``)."""

    async def emit(self, type_: str, data: dict[str, Any]) -> None: ...
    async def token(self, text: str) -> None: ...
    async def chunk(self, chunk: Any) -> None: ...


@dataclass(frozen=True)
class Driven:
    """What a Runnable produced, JSON-ready."""

    output: Any
    first_token_s: float | None = None
    """From the (first) chat model's request to its first token; None without a model."""
    usage: TokenUsage = field(default_factory=TokenUsage)
    """Tokens the run used, as far as its models reported them."""


async def drive_answer(
    pipeline: Runnable[Any, Any], request: Any, config: RunnableConfig, events: EventSink
) -> Driven:
    """The built-in pipeline: its ``sources``/``token``/``answer`` stream, as events."""
    result: dict[str, Any] | None = None
    usage = TokenUsage()
    asked_at = time.monotonic()
    first_token_s: float | None = None
    async for event in pipeline.astream(request, config):
        if event["type"] == "sources":
            await events.emit("sources", {"sources": event["sources"]})
            asked_at = time.monotonic()
        elif event["type"] == "token":
            if first_token_s is None:
                first_token_s = time.monotonic() - asked_at
            await events.token(event["text"])
        elif event["type"] == "answer":
            result = {"answer": event["answer"], "sources": event["sources"]}
            usage = TokenUsage.from_event(event.get("usage"))
    if result is None:
        raise RagserveError("the answer pipeline ended without an answer")
    return Driven(result, first_token_s, usage)


async def drive_runnable(
    runnable: Runnable[Any, Any], value: Any, config: RunnableConfig, events: EventSink
) -> Driven:
    """Any Runnable: root chunks as ``chunk`` events, chat-model tokens as ``token`` events."""
    asked_at: float | None = None  # the first chat model's request: first-token latency
    first_token_s: float | None = None
    output: Any = None
    last_chunk: Any = None
    streamed = False
    usage = TokenUsage()
    async for event in runnable.astream_events(value, config, version="v2"):
        kind = event["event"]
        root = not event.get("parent_ids")
        if kind == "on_chat_model_start" and asked_at is None:
            asked_at = time.monotonic()
        elif kind == "on_chat_model_stream":
            text = _text_of(event["data"].get("chunk"))
            if text:
                if first_token_s is None and asked_at is not None:
                    first_token_s = time.monotonic() - asked_at
                await events.token(text)
        elif kind == "on_chat_model_end":
            usage = usage + _usage_of(event["data"].get("output"))
            if root:
                output = event["data"].get("output")
        elif root and kind.endswith("_stream"):
            last_chunk, streamed = event["data"].get("chunk"), True
            await events.chunk(to_json(last_chunk))
        elif root and kind.endswith("_end"):
            output = event["data"].get("output")
    if output is None and streamed:  # a Runnable that reports no output: its last chunk
        output = last_chunk
    return Driven(to_json(output), first_token_s, usage)


def _usage_of(message: Any) -> TokenUsage:
    """A chat model's reported tokens (LangChain's ``usage_metadata``); none: zero."""
    metadata = getattr(message, "usage_metadata", None) or {}
    return TokenUsage.from_event(
        {
            "prompt_tokens": metadata.get("input_tokens"),
            "completion_tokens": metadata.get("output_tokens"),
        }
    )


def _text_of(chunk: Any) -> str:
    """The text of a chat-model chunk: ``content`` as a string, or its text parts."""
    content = getattr(chunk, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks (multimodal / tool-use models)
        return "".join(
            part if isinstance(part, str) else str(part.get("text", ""))
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text")
        )
    return ""
