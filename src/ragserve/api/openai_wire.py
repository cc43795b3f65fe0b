"""OpenAI wire shapes of a ragserve answer job: the completion, its chunks, usage, citations.

Pure functions of a job and its result; the router (``api/routers/openai.py``) sends them.
docs/OPENAI.md describes the choices made here (citations footer, token estimate, ids).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from ragserve.api.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    Choice,
    RagserveExtension,
    Usage,
)
from ragserve.api.schemas import Source
from ragserve.jobs.models import Job
from ragserve.kb.types import Location, format_location

COMPLETION_ID_PREFIX = "chatcmpl-"
DONE = "data: [DONE]\n\n"
SOURCES_HEADING = "Sources:"

_CITATION = re.compile(r"\[(\d{1,3})\]")


def completion_id(job_id: str) -> str:
    """``chatcmpl-<job id>``: the completion names its job, so it can be fetched later."""
    return f"{COMPLETION_ID_PREFIX}{job_id}"


def created_of(job: Job) -> int:
    return int(job.created_at.timestamp())


def estimate_tokens(text: str) -> int:
    """About 4 characters per token for Latin text, one per CJK character (the common rules
    of thumb for BPE tokenizers): enough to size a bill, never exact. Counted without a regex
    (UTF-8 length): CJK characters take 3 bytes, ASCII 1."""
    wide = (len(text.encode("utf-8")) - len(text)) // 2  # characters beyond ASCII, ~CJK
    return math.ceil((len(text) - wide) / 4) + wide


def estimate_usage(question: str, sources: Sequence[Source], answer: str) -> Usage:
    """Prompt = the question and the passages the model read; completion = the answer."""
    prompt = estimate_tokens(question) + sum(estimate_tokens(s.text) for s in sources)
    completion = estimate_tokens(answer)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def cited_sources_footer(answer: str, sources: Sequence[Source]) -> str:
    """``\\n\\nSources:\\n[1] leave.md p. 3`` for each passage the answer cites as ``[n]``,
    so that a plain chat client (which never sees the ``ragserve`` object) can resolve them.
    Empty when nothing is cited (e.g. "The documents do not contain the answer.")."""
    cited = sorted({int(n) for n in _CITATION.findall(answer) if 1 <= int(n) <= len(sources)})
    if not cited:
        return ""
    lines = [
        f"[{n}] {format_location(sources[n - 1].source, _location(sources[n - 1]))}" for n in cited
    ]
    return "\n\n" + SOURCES_HEADING + "\n" + "\n".join(lines)


def _location(source: Source) -> Location:
    return Location.from_dict(source.location.model_dump())


def sources_of(result: dict[str, Any] | None) -> list[Source]:
    return [Source.model_validate(s) for s in (result or {}).get("sources") or []]


def answer_of(result: dict[str, Any] | None) -> str:
    return str((result or {}).get("answer") or "")


def content_of(answer: str, sources: Sequence[Source], *, footer: bool) -> str:
    """The message content: the answer, then (if wanted) its sources footer."""
    return answer + (cited_sources_footer(answer, sources) if footer else "")


def completion(job: Job, model: str, question: str, *, footer: bool) -> ChatCompletion:
    """The non-streamed answer of a succeeded job."""
    sources = sources_of(job.result)
    answer = answer_of(job.result)
    return ChatCompletion(
        id=completion_id(job.job_id),
        created=created_of(job),
        model=model,
        system_fingerprint=job.version,
        choices=[
            Choice(message=AssistantMessage(content=content_of(answer, sources, footer=footer)))
        ],
        usage=estimate_usage(question, sources, answer),
        ragserve=RagserveExtension(
            job_id=job.job_id, sources=sources, cached=job.cached, question=question
        ),
    )


class ChunkWriter:
    """The ``data:`` lines of one streamed completion: every chunk has the same id, created
    and model; with ``include_usage`` every chunk has ``"usage": null`` but the usage chunk."""

    def __init__(self, job: Job, model: str, *, include_usage: bool) -> None:
        self._head: dict[str, Any] = {
            "id": completion_id(job.job_id),
            "object": "chat.completion.chunk",
            "created": created_of(job),
            "model": model,
            "system_fingerprint": job.version,
        }
        self.include_usage = include_usage

    def _line(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {**self._head, "choices": choices, **extra}
        if self.include_usage and "usage" not in body:
            body["usage"] = None
        return sse_data(body)

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._line([choice], **extra)

    def role(self) -> str:
        """The first chunk: the assistant's role and empty content, as OpenAI sends it."""
        return self.delta({"role": "assistant", "content": ""})

    def content(self, text: str) -> str:
        return self.delta({"content": text})

    def finish(self, extension: RagserveExtension) -> str:
        """The last chunk with a choice: ``finish_reason`` and the ``ragserve`` object."""
        return self.delta({}, "stop", ragserve=extension.model_dump(mode="json"))

    def usage(self, usage: Usage) -> str:
        """The usage-only chunk (``choices`` empty) that precedes ``[DONE]``."""
        return self._line([], usage=usage.model_dump())


def sse_data(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


def error_detail(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
