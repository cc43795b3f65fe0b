"""What a job does once a worker holds an attempt: run an app, or ingest a batch.

Answer jobs are jobs of the app ``rag``: every Runnable, the built-in pipeline included, runs
through ``_run_app`` (``ragserve.jobs.app_streams`` turns its stream into events).

Every write goes through the attempt (fenced). Tokens and chunks are buffered (``EventWriter``):
the first one is stored at once, the following ones every ``FLUSH_S`` in one statement, by a
background write that the token loop does not wait for, and the last ones together with the
result; a hundred streaming jobs cost a few hundred small inserts a second, not one per token.
"""

from __future__ import annotations

import asyncio
import math
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


FLUSH_S = 0.25
"""How often buffered tokens and chunks are stored (and streams woken) after the first one.

Each flush is a statement, and a wake-up of every stream of the job; at 0.25 s an answer of
the usual 20-50 tokens a second goes out in chunks of 5-12 tokens, still smooth to read
(docs/PERFORMANCE.md, "Worker side and pool: after")."""


class EventWriter:
    """Writes the events of one attempt in order, batching tokens and chunks.

    The first token or chunk of the attempt is stored at once (time to first token); later
    ones are buffered and stored every ``flush_s`` in one statement. Those writes run in a
    background task, one at a time (so in order), and the token loop does not wait for them;
    a write that finds the attempt fenced, or that fails, is raised by the next call (``token``,
    ``chunk``, ``emit``, ``flush``, ``drain``): a fenced attempt stops at its next token.
    ``emit`` (sources, progress) and ``flush`` wait until everything before them is stored;
    ``drain`` hands back what is still buffered, for the statement that stores the result.
    """

    def __init__(self, jobs: JobStore, attempt: Attempt, flush_s: float = FLUSH_S) -> None:
        self.jobs = jobs
        self.attempt = attempt
        self.flush_s = flush_s
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._last_flush = -math.inf  # the first token or chunk goes out at once
        self._streamed = False
        self._writing: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Store an event now (after whatever is pending)."""
        self._pending.append((type_, data))
        await self.flush()

    async def token(self, text: str) -> None:
        self._raise_failure()
        if self._pending and self._pending[-1][0] == "token":
            last = self._pending[-1][1]
            last["text"] += text
        else:
            self._pending.append(("token", {"text": text}))
        self._streaming()

    async def chunk(self, chunk: Any) -> None:
        self._raise_failure()
        self._pending.append(("chunk", {"chunk": chunk}))
        self._streaming()

    async def flush(self) -> None:
        """Store everything pending, and wait until it is stored."""
        if batch := await self._settled():
            await self._write(batch)

    async def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """Wait for the write in progress, then hand back the events not yet stored (stamped
        with the attempt), for the caller to store with its own statement."""
        return self._stamped(await self._settled())

    def _streaming(self) -> None:
        """Start a background write when one is due and none is running."""
        if not self._streamed:
            self._streamed = True
            self._last_flush = -math.inf
        if self._writing is None and time.monotonic() - self._last_flush >= self.flush_s:
            self._last_flush = time.monotonic()
            batch, self._pending = self._pending, []
            self._writing = asyncio.create_task(self._write(batch))
            self._writing.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        if self._writing is task:
            self._writing = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._failure = exc

    async def _settled(self) -> list[tuple[str, dict[str, Any]]]:
        """Wait for the write in progress (raising its failure); take what is pending."""
        if (task := self._writing) is not None:
            await asyncio.wait([task])
            self._written(task)
        self._raise_failure()
        self._last_flush = time.monotonic()
        batch, self._pending = self._pending, []
        return batch

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _stamped(self, batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        number = self.attempt.number
        return [(type_, {**data, "attempt": number}) for type_, data in batch]

    async def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        stamped = self._stamped(batch)
        if len(stamped) == 1:
            ok = await self.jobs.append_event(self.attempt, *stamped[0])
        else:
            ok = await self.jobs.append_events(self.attempt, stamped)
        if not ok:
            raise JobFenced(f"attempt {self.attempt.number} no longer holds the job")


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
            collection = attempt.target  # read by the statement that started the attempt
            if collection is None or collection.name != value["collection"]:
                collection = await self.kb.require_collection(
                    value["collection"], tenant=attempt.tenant
                )
            if self.cache_ttl_s:
                cache = (collection.key, collection.generation, self.cache_ttl_s)
        events = EventWriter(self.jobs, attempt)
        driven = await _drive(app, value, cast(RunnableConfig, config), events)
        # The last tokens are stored with the result, in its statement.
        last = await events.drain()
        result = driven.output if attempt.kind == "answer" else {"output": driven.output}
        if not await self.jobs.succeed(
            attempt, result, cache=cache, tokens=driven.usage, events=last
        ):
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
