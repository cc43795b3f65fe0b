"""What a job does once a worker holds an attempt: answer a question or ingest a batch.

Every write goes through the attempt (fenced). Tokens are buffered and stored about ten times
a second, so a hundred streaming jobs cost a thousand small inserts a second, not one per token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.runnables import Runnable

from ragserve.errors import DocumentError, RagserveError
from ragserve.jobs.store import Attempt, JobStore
from ragserve.jobs.usage import TokenUsage
from ragserve.kb.ingest import DocumentResult, IngestItem, Ingestor
from ragserve.kb.store import KnowledgeStore


class JobFenced(RagserveError):
    """This attempt no longer holds the job (cancelled, or a newer attempt took over)."""


@dataclass(frozen=True)
class AttemptReport:
    """How an attempt that ran to its end ended, for the worker's metrics."""

    status: Literal["succeeded", "failed"]
    first_token_s: float | None = None
    """From the retrieved sources (the model's request) to the first answer token."""


class EventWriter:
    """Writes the events of one attempt, batching tokens."""

    def __init__(self, jobs: JobStore, attempt: Attempt, flush_s: float = 0.1) -> None:
        self.jobs = jobs
        self.attempt = attempt
        self.flush_s = flush_s
        self._tokens: list[str] = []
        self._last_flush = time.monotonic()

    async def emit(self, type_: str, data: dict[str, Any]) -> None:
        await self.flush()
        await self._write(type_, data)

    async def token(self, text: str) -> None:
        self._tokens.append(text)
        if time.monotonic() - self._last_flush >= self.flush_s:
            await self.flush()

    async def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._tokens:
            text, self._tokens = "".join(self._tokens), []
            await self._write("token", {"text": text})

    async def _write(self, type_: str, data: dict[str, Any]) -> None:
        if not await self.jobs.append_event(
            self.attempt, type_, {**data, "attempt": self.attempt.number}
        ):
            raise JobFenced(f"attempt {self.attempt.number} no longer holds the job")


class JobRunner:
    """Runs one attempt to its result; raises on failure and lets the worker classify it."""

    def __init__(
        self,
        jobs: JobStore,
        kb: KnowledgeStore,
        pipeline: Runnable[dict[str, Any], dict[str, Any]],
        ingestor: Ingestor,
        cache_ttl_s: float,
    ) -> None:
        self.jobs = jobs
        self.kb = kb
        self.pipeline = pipeline
        self.ingestor = ingestor
        self.cache_ttl_s = cache_ttl_s

    async def run(self, attempt: Attempt) -> AttemptReport:
        if attempt.kind == "answer":
            return await self._answer(attempt)
        return await self._ingest(attempt)

    async def _answer(self, attempt: Attempt) -> AttemptReport:
        # Read the generation before retrieving: a change during the job leaves the cached
        # answer already stale, never wrongly fresh.
        collection = await self.kb.require_collection(attempt.collection)
        events = EventWriter(self.jobs, attempt)
        result: dict[str, Any] | None = None
        tokens = TokenUsage()
        asked_at = time.monotonic()
        first_token_s: float | None = None
        async for event in self.pipeline.astream(attempt.request):
            if event["type"] == "sources":
                await events.emit("sources", {"sources": event["sources"]})
                asked_at = time.monotonic()
            elif event["type"] == "token":
                if first_token_s is None:
                    first_token_s = time.monotonic() - asked_at
                await events.token(event["text"])
            elif event["type"] == "answer":
                result = {"answer": event["answer"], "sources": event["sources"]}
                tokens = TokenUsage.from_event(event.get("usage"))
        await events.flush()
        if result is None:
            raise RagserveError("the answer pipeline ended without an answer")
        cache = (collection.name, collection.generation, self.cache_ttl_s)
        cached = cache if self.cache_ttl_s else None
        if not await self.jobs.succeed(attempt, result, cache=cached, tokens=tokens):
            raise JobFenced("the job changed hands before its result was stored")
        return AttemptReport("succeeded", first_token_s)

    async def _ingest(self, attempt: Attempt) -> AttemptReport:
        files = await self.jobs.files(attempt.job_id)
        items = [
            IngestItem(source=f.source, data=f.data, text=f.text, metadata=f.metadata or {})
            for f in files
        ]
        events = EventWriter(self.jobs, attempt)
        done = 0

        async def progress(doc: DocumentResult) -> None:
            nonlocal done
            done += 1
            await events.emit(
                "status",
                {
                    "status": "running",
                    "progress": {"done": done, "total": len(items)},
                    "document": doc.as_dict(),
                },
            )

        results = await self.ingestor.ingest(attempt.collection, items, on_document=progress)
        result = {"documents": [r.as_dict() for r in results]}
        report: AttemptReport
        if all(r.status == "failed" for r in results):
            error = DocumentError(f"none of the {len(results)} documents could be read")
            ok = await self.jobs.fail(attempt, {"type": error.type, "message": str(error)}, result)
            report = AttemptReport("failed")
        else:
            embedded = sum(r.embedding_tokens for r in results)
            ok = await self.jobs.succeed(
                attempt, result, tokens=TokenUsage(embedding_tokens=embedded)
            )
            report = AttemptReport("succeeded")
        if not ok:
            raise JobFenced("the job changed hands before its result was stored")
        return report
