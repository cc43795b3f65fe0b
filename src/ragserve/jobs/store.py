"""The job service's storage: jobs, their events, uploaded files and the answer cache.

The statements themselves are in ``ragserve.jobs.queries``, by name.

Fencing: a worker names the attempt it holds on every write. A write whose attempt is not the
job's current one, or whose job is no longer ``running``, changes nothing and reports so; a
stale worker that wakes up late cannot overwrite a newer attempt or a cancellation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from ragserve.db.pool import Connection, Database
from ragserve.jobs import queries, queue
from ragserve.jobs.models import Job, JobEvent, JobStatus
from ragserve.jobs.usage import TokenUsage
from ragserve.kb.store import Collection
from ragserve.names import DEFAULT_TENANT, is_uuid

IDEMPOTENCY_KEY_SEPARATOR = "\n"
"""Joins a tenant and its client's ``Idempotency-Key`` in storage. An HTTP header value cannot
hold a newline, nor can a tenant name, so no two tenants' keys ever meet."""


def stored_key(tenant: str, key: str) -> str:
    """How ``tenant``'s ``Idempotency-Key`` is stored: as sent for the tenant ``default``
    (keys stored before tenants existed stay valid), else prefixed with the tenant."""
    return key if tenant == DEFAULT_TENANT else f"{tenant}{IDEMPOTENCY_KEY_SEPARATOR}{key}"


@dataclass(frozen=True)
class NewJob:
    kind: str
    collection: str
    query: str | None
    request: dict[str, Any]
    request_hash: str
    max_attempts: int
    cache_key: str | None = None
    idempotency_key: str | None = None
    tenant: str = DEFAULT_TENANT
    app: str | None = None
    """The app that runs the job (``ragserve.jobs.apps``); None for ingest jobs."""
    queue: str | None = None
    """The queue of the job's entry; None: the queue named like its kind."""


@dataclass(frozen=True)
class Attempt:
    """What a worker holds while it runs a job."""

    job_id: str
    number: int
    max_attempts: int
    kind: str
    collection: str
    """The collection's name, as its tenant calls it."""
    request: dict[str, Any]
    cache_key: str | None
    version: str | None = None
    waited_s: float | None = None
    """Seconds the job waited in the queue for this attempt; None for a takeover."""
    tenant: str = DEFAULT_TENANT
    """Whose job it is: its collection is that tenant's."""
    app: str | None = None
    target: Collection | None = None
    """The job's collection as it was when the attempt started; None if it did not exist."""


@dataclass(frozen=True)
class WorkerIdentity:
    """Who runs an attempt: one worker process, of one version."""

    id: str
    version: str


@dataclass(frozen=True)
class UploadedFile:
    source: str
    data: bytes | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None


def _new_job_params(job: NewJob) -> dict[str, Any]:
    return {
        "tenant": job.tenant,
        "kind": job.kind,
        "collection": job.collection,
        "query": job.query,
        "request": Jsonb(job.request),
        "request_hash": job.request_hash,
        "max_attempts": job.max_attempts,
        "cache_key": job.cache_key,
        # Keys live in job_idempotency_keys (see ``remember_key``); a key on the row would
        # keep the job out of coalescing (the in-flight predicate requires it to be NULL).
        "idempotency_key": None,
        "app": job.app,
    }


def _collection_of(row: dict[str, Any]) -> Collection | None:
    """The job's collection from the ``collection_*`` columns of ``START_ATTEMPT``."""
    if row["collection_embedder"] is None:
        return None
    return Collection(
        name=row["collection"],
        embedder=row["collection_embedder"],
        embedding_dim=row["collection_dim"],
        generation=row["collection_generation"],
        tenant=row["tenant"],
    )


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- creating --------------------------------------------------------------------

    async def insert(self, conn: Connection, job: NewJob) -> dict[str, Any] | None:
        """Insert a queued job with its first event, in one statement (this is the hot path
        of every submission); None when an identical computation is already in flight."""
        params = {
            **_new_job_params(job),
            "first_event": Jsonb({"status": "queued", "attempt": 0}),
        }
        return await (await conn.execute(queries.INSERT_QUEUED_JOB, params)).fetchone()

    async def insert_and_enqueue(
        self,
        conn: Connection,
        job: NewJob,
        queue_name: str,
        *,
        check_cache: bool,
        remember_key: bool,
    ) -> dict[str, Any] | None:
        """Insert a queued job with its first event and its entry in ``queue_name``, in one
        statement (``queries.insert_queued_job_and_entry``); with ``remember_key``, also its
        ``Idempotency-Key`` (a twin's key raises ``UniqueViolation``). None when nothing was
        inserted: an identical computation is in flight, or, with ``check_cache``, a valid
        cached answer exists."""
        params = {
            **_new_job_params(job),
            "first_event": Jsonb({"status": "queued", "attempt": 0}),
            "check_cache": check_cache and job.cache_key is not None,
            "stored_key": (
                stored_key(job.tenant, job.idempotency_key)
                if remember_key and job.idempotency_key
                else None
            ),
            "queue": queue_name,
        }
        cursor = await conn.execute(queue.insert_job_and_entry_statement(), params)
        return await cursor.fetchone()

    async def insert_cached(
        self, conn: Connection, job: NewJob, result: dict[str, Any]
    ) -> dict[str, Any]:
        """A job that is born ``succeeded`` with a cached result; it never touches the queue."""
        params = {**_new_job_params(job), "result": Jsonb(result)}
        row = await (await conn.execute(queries.INSERT_CACHED_JOB, params)).fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row
        await self._append(conn, row["id"], "status", {"status": "succeeded", "attempt": 0})
        await self._append(conn, row["id"], "done", {"result": result, "cached": True})
        return row

    async def add_files(self, conn: Connection, job_id: str, files: Sequence[UploadedFile]) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(
                queries.INSERT_FILE,
                [
                    {
                        "job_id": job_id,
                        "ordinal": ordinal,
                        "source": f.source,
                        "data": f.data,
                        "text": f.text,
                        "metadata": Jsonb(f.metadata or {}),
                    }
                    for ordinal, f in enumerate(files)
                ],
            )

    async def files(self, job_id: str) -> list[UploadedFile]:
        async with self.db.connection() as conn:
            rows = await (await conn.execute(queries.SELECT_FILES, {"job_id": job_id})).fetchall()
        return [
            UploadedFile(
                r["source"],
                bytes(r["data"]) if r["data"] is not None else None,
                r["text"],
                r["metadata"],
            )
            for r in rows
        ]

    # -- reading ---------------------------------------------------------------------

    async def get_row(
        self, job_id: str, *, tenant: str | None, conn: Connection | None = None
    ) -> dict[str, Any] | None:
        """The job, if it is ``tenant``'s (any tenant's when None)."""
        if not is_uuid(job_id):
            return None
        params = {"id": job_id, "tenant": tenant}
        if conn is not None:
            return await (await conn.execute(queries.SELECT_JOB, params)).fetchone()
        async with self.db.connection() as own:
            return await (await own.execute(queries.SELECT_JOB, params)).fetchone()

    async def get(self, job_id: str, *, tenant: str | None) -> Job | None:
        row = await self.get_row(job_id, tenant=tenant)
        return Job.from_row(row) if row else None

    async def by_idempotency_key(
        self, conn: Connection, key: str, *, tenant: str
    ) -> dict[str, Any] | None:
        params = {"idempotency_key": stored_key(tenant, key), "tenant": tenant}
        return await (await conn.execute(queries.SELECT_JOB_BY_IDEMPOTENCY_KEY, params)).fetchone()

    async def remember_key(
        self, conn: Connection, key: str, job_id: str, body_hash: str, *, tenant: str
    ) -> None:
        """Make ``key`` name ``job_id``; a concurrent twin's insert raises UniqueViolation."""
        params = {
            "idempotency_key": stored_key(tenant, key),
            "job_id": job_id,
            "body_hash": body_hash,
            "tenant": tenant,
        }
        await conn.execute(queries.INSERT_IDEMPOTENCY_KEY, params)

    async def active_count(self, conn: Connection, tenant: str, *, lock: int) -> int:
        """``tenant``'s queued and running jobs, counted under a transaction-scoped advisory
        lock (``lock``, ``tenant``) that serialises the tenant's submissions until commit."""
        params = {"tenant": tenant, "lock": lock}
        await conn.execute(queries.LOCK_TENANT_SUBMISSIONS, params)
        row = await (await conn.execute(queries.COUNT_ACTIVE_OF_TENANT, params)).fetchone()
        return int(row["n"]) if row else 0

    async def in_flight(self, conn: Connection, cache_key: str) -> dict[str, Any] | None:
        params = {"cache_key": cache_key}
        return await (await conn.execute(queries.SELECT_JOB_IN_FLIGHT, params)).fetchone()

    async def newest(
        self, status: JobStatus | None, limit: int, *, tenant: str | None
    ) -> list[Job]:
        """Up to ``limit`` jobs (of ``status``, if given; ``tenant``'s, or every tenant's when
        None), newest first."""
        params = {"limit": limit, "tenant": tenant, "status": status.value if status else None}
        if tenant is None:
            sql = queries.LIST_JOBS if status is None else queries.LIST_JOBS_WITH_STATUS
        else:
            sql = (
                queries.LIST_TENANT_JOBS if status is None else queries.LIST_TENANT_JOBS_WITH_STATUS
            )
        async with self.db.connection() as conn:
            rows = await (await conn.execute(sql, params)).fetchall()
        return [Job.from_row(r) for r in rows]

    async def count_by_status(self) -> dict[str, int]:
        async with self.db.connection() as conn:
            rows = await (await conn.execute(queries.COUNT_BY_STATUS)).fetchall()
        return {r["status"]: r["n"] for r in rows}

    async def events_after(self, job_id: str, after: int, limit: int = 500) -> list[JobEvent]:
        params = {"job_id": job_id, "after": after, "limit": limit}
        async with self.db.connection() as conn:
            rows = await (await conn.execute(queries.SELECT_EVENTS_AFTER, params)).fetchall()
        return [JobEvent(**r) for r in rows]

    async def get_with_events_after(
        self, job_id: str, *, tenant: str | None, after: int, limit: int
    ) -> tuple[Job | None, list[JobEvent]]:
        """The job (as ``get``) and its first ``limit`` events after ``after``, read in that
        order on one connection in one round trip (a pipeline): an event stream's opening.
        The events are read whatever the job's tenant; they are for the caller to drop when
        the job is not ``tenant``'s (None)."""
        if not is_uuid(job_id):
            return None, []
        async with self.db.connection() as conn:
            async with conn.pipeline():
                job = await conn.execute(queries.SELECT_JOB, {"id": job_id, "tenant": tenant})
                events = await conn.execute(
                    queries.SELECT_EVENTS_AFTER, {"job_id": job_id, "after": after, "limit": limit}
                )
            row = await job.fetchone()
            rows = await events.fetchall()
        if row is None:
            return None, []
        return Job.from_row(row), [JobEvent(**r) for r in rows]

    # -- the worker's side (fenced) --------------------------------------------------

    async def start_attempt(
        self,
        job_id: str,
        worker: WorkerIdentity | None = None,
        eligible_at: datetime | None = None,
    ) -> Attempt | None:
        """Take the next attempt of a queued job, or of a running one whose worker died.

        None when the job was cancelled or finished meanwhile: the queue entry is stale.
        One statement (the job update, its ``running`` event naming the ``worker``'s version,
        and the attempt's row), so one round trip. ``eligible_at``: when the queue entry
        became due (later than its queueing after a retry backoff).
        """
        params = {
            "id": job_id,
            "version": worker.version if worker is not None else None,
            "worker_id": worker.id if worker is not None else None,
            "eligible_at": eligible_at,
        }
        async with self.db.connection() as conn:
            row = await (await conn.execute(queries.START_ATTEMPT, params)).fetchone()
        if row is None:
            return None
        return Attempt(
            job_id=row["id"],
            number=row["attempts"],
            max_attempts=row["max_attempts"],
            kind=row["kind"],
            collection=row["collection"],
            request=row["request"],
            cache_key=row["cache_key"],
            version=worker.version if worker is not None else None,
            waited_s=row["waited_s"],
            tenant=row["tenant"],
            app=row["app"],
            target=_collection_of(row),
        )

    async def append_event(self, attempt: Attempt, type_: str, data: dict[str, Any]) -> bool:
        """Store one event of ``attempt``; False if the attempt no longer holds the job."""
        async with self.db.connection() as conn:
            return await self._append(conn, attempt.job_id, type_, data, fence=attempt.number)

    async def append_events(
        self, attempt: Attempt, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> bool:
        """Store several events of ``attempt`` in order, in one round trip; False if the
        attempt no longer holds the job."""
        batch = [{"type": type_, "data": data} for type_, data in events]
        params = {"id": attempt.job_id, "attempt": attempt.number, "events": Jsonb(batch)}
        async with self.db.connection() as conn:
            rows = await (await conn.execute(queries.APPEND_EVENTS_OF_ATTEMPT, params)).fetchall()
        return bool(rows)

    async def succeed(
        self,
        attempt: Attempt,
        result: dict[str, Any],
        cache: tuple[str, int, float] | None = None,
        tokens: TokenUsage | None = None,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> bool:
        """Record the result; with ``cache=(collection key, generation, ttl_s)`` also cache it
        (the key is ``Collection.key``, the stored name).

        One statement: the fenced update, ``events`` (the attempt's events not stored yet, in
        order), the ``done`` event, the cache entry and the removal of the uploaded files
        commit together, in one round trip; with ``tokens``, the job and its tokens are added
        to the attempt's tenant's usage of the day, in the same statement.
        """
        collection, generation, ttl_s = cache if cache is not None else (None, None, None)
        params = {
            "id": attempt.job_id,
            "attempt": attempt.number,
            "result": Jsonb(result),
            "done": Jsonb({"result": result}),
            "events": Jsonb([{"type": type_, "data": data} for type_, data in events]),
            "cache_key": attempt.cache_key if cache is not None else None,
            "collection": collection,
            "generation": generation,
            "ttl_s": ttl_s,
            "tenant": attempt.tenant,
            **(tokens or TokenUsage()).params(attempt.tenant if tokens is not None else None),
        }
        async with self.db.connection() as conn:
            row = await (await conn.execute(queries.SUCCEED, params)).fetchone()
        return bool(row and row["n"])

    async def fail(
        self, attempt: Attempt, error: dict[str, str], result: dict[str, Any] | None = None
    ) -> bool:
        """Dead-letter: the job ends ``failed`` and stays inspectable (and retryable).

        One statement: the fenced update and the ``error`` event."""
        params = {
            "id": attempt.job_id,
            "attempt": attempt.number,
            "result": Jsonb(result) if result is not None else None,
            "error": Jsonb(error),
            "event_type": "error",
            "event": Jsonb(error),
        }
        async with self.db.connection() as conn:
            row = await (await conn.execute(queries.FAIL, params)).fetchone()
        return bool(row and row["n"])

    async def requeue(
        self, attempt: Attempt, error: dict[str, str] | None, *, refund: bool = False
    ) -> bool:
        """Put the job back to ``queued`` before pgqueuer re-queues its entry.

        ``refund`` gives the attempt back: a worker that drains on SIGTERM did nothing wrong.
        One statement: the fenced update and the ``status`` event.
        """
        event = {
            "status": "queued",
            "attempt": attempt.number,
            "error": error,
            "handed_back": refund,
        }
        params = {
            "id": attempt.job_id,
            "attempt": attempt.number,
            "error": Jsonb(error) if error else None,
            "refund": 1 if refund else 0,
            "event_type": "status",
            "event": Jsonb(event),
        }
        async with self.db.connection() as conn:
            row = await (await conn.execute(queries.REQUEUE, params)).fetchone()
        return bool(row and row["n"])

    # -- the client's side -----------------------------------------------------------

    async def cancel(self, conn: Connection, job_id: str) -> dict[str, Any] | None:
        """Mark a queued or running job cancelled; returns the row before the change."""
        row = await (await conn.execute(queries.CANCEL, {"id": job_id})).fetchone()
        if row is not None:
            await self._append(
                conn, job_id, "status", {"status": "cancelled", "attempt": row["attempts"]}
            )
        return row

    async def reopen(self, conn: Connection, job_id: str, extra_attempts: int) -> bool:
        """Put a failed or cancelled job back in the queue with ``extra_attempts`` more tries."""
        params = {"id": job_id, "extra_attempts": extra_attempts}
        if (await conn.execute(queries.REOPEN, params)).rowcount == 0:
            return False
        await self._append(conn, job_id, "status", {"status": "queued", "attempt": 0})
        return True

    async def cached_result(self, conn: Connection, cache_key: str) -> dict[str, Any] | None:
        """A cached answer still valid: not expired, and its collection unchanged since."""
        params = {"cache_key": cache_key}
        row = await (await conn.execute(queries.SELECT_CACHED_RESULT, params)).fetchone()
        return row["result"] if row else None

    # -- events ----------------------------------------------------------------------

    @staticmethod
    async def _append(
        conn: Connection,
        job_id: str,
        type_: str,
        data: dict[str, Any],
        fence: int | None = None,
    ) -> bool:
        """Number and store an event; with ``fence``, only if that attempt still runs the job."""
        params = {"id": job_id, "attempt": fence, "type": type_, "data": Jsonb(data)}
        sql = queries.APPEND_EVENT if fence is None else queries.APPEND_EVENT_OF_ATTEMPT
        row = await (await conn.execute(sql, params)).fetchone()
        return row is not None
