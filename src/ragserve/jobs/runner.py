"""What a job does once a worker holds an attempt: run an app, or ingest a batch.

Answer jobs are jobs of the app ``rag``: every Runnable, the built-in pipeline included, runs
through ``_run_app`` (``ragserve.jobs.app_streams`` turns its stream into events).

Every write goes through the attempt (fenced). Tokens and chunks are buffered and stored about
ten times a second, in one statement per flush, so a hundred streaming jobs cost a thousand
small inserts a second, not one per token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig

from ragserve.errors import DocumentError, RagserveError
from ragserve.jobs.app_streams import Driven, drive_answer, drive_runnable
from ragserve.jobs.apps import RAG_APP, App, AppRegistry
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
    """Writes the events of one attempt, batching tokens and chunks."""

    def __init__(self, jobs: JobStore, attempt: Attempt, flush_s: float = 0.1) -> None:
        self.jobs = jobs
        self.attempt = attempt
        self.flush_s = flush_s
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._last_flush = time.monotonic()

    async def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Store an event now (after whatever is pending)."""
        self._pending.append((type_, data))
        await self.flush()

    async def token(self, text: str) -> None:
        if self._pending and self._pending[-1][0] == "token":
            last = self._pending[-1][1]
            last["text"] += text
        else:
            self._pending.append(("token", {"text": text}))
        await self._maybe_flush()

    async def chunk(self, chunk: Any) -> None:
        self._pending.append(("chunk", {"chunk": chunk}))
        await self._maybe_flush()

    async def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_s:
            await self.flush()

    async def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        number = self.attempt.number
        stamped = [(type_, {**data, "attempt": number}) for type_, data in batch]
        if len(stamped) == 1:
            ok = await self.jobs.append_event(self.attempt, *stamped[0])
        else:
            ok = await self.jobs.append_events(self.attempt, stamped)
        if not ok:
            raise JobFenced(f"attempt {number} no longer holds the job")


class JobRunner:
    """Runs one attempt to its result; raises on failure and lets the worker classify it."""

    def __init__(
        self,
        jobs: JobStore,
        kb: KnowledgeStore,
        apps: AppRegistry,
        ingestor: Ingestor,
        cache_ttl_s: float,
    ) -> None:
        self.jobs = jobs
        self.kb = kb
        self.apps = apps
        self.ingestor = ingestor
        self.cache_ttl_s = cache_ttl_s

    async def run(self, attempt: Attempt) -> AttemptReport:
        if attempt.kind == "ingest":
            return await self._ingest(attempt)
        return await self._run_app(attempt)

    async def _run_app(self, attempt: Attempt) -> AttemptReport:
        """An answer job (app ``rag``, request = its input) or an app job (``{input, config}``)."""
        app = self.apps.get(attempt.app or RAG_APP)
        value: Any
        if attempt.kind == "app":
            value, config = attempt.request.get("input"), dict(attempt.request.get("config") or {})
        else:
            value, config = attempt.request, {}
        config["metadata"] = {
            **(config.get("metadata") or {}),
            "ragserve_job_id": attempt.job_id,
            "ragserve_attempt": attempt.number,
            "ragserve_app": app.name,
            "ragserve_tenant": attempt.tenant,
        }
        cache: tuple[str, int, float] | None = None
        if app.adapter == "answer":
            # The job's tenant, never one named in the input: the collection is the job's
            # owner's. Read the generation before retrieving: a change during the job leaves
            # the cached answer already stale, never wrongly fresh.
            value = {**value, "tenant": attempt.tenant}
            collection = await self.kb.require_collection(
                value["collection"], tenant=attempt.tenant
            )
            if self.cache_ttl_s:
                cache = (collection.key, collection.generation, self.cache_ttl_s)
        events = EventWriter(self.jobs, attempt)
        driven = await _drive(app, value, cast(RunnableConfig, config), events)
        await events.flush()
        result = driven.output if attempt.kind == "answer" else {"output": driven.output}
        if not await self.jobs.succeed(attempt, result, cache=cache, tokens=driven.usage):
            raise JobFenced("the job changed hands before its result was stored")
        return AttemptReport("succeeded", driven.first_token_s)

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

        results = await self.ingestor.ingest(
            attempt.collection, items, on_document=progress, tenant=attempt.tenant
        )
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


async def _drive(app: App, value: Any, config: RunnableConfig, events: EventWriter) -> Driven:
    if app.adapter == "answer":
        return await drive_answer(app.runnable, value, config, events)
    return await drive_runnable(app.runnable, value, config, events)
