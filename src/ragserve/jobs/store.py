"""All SQL of the job service: jobs, their events, uploaded files and the answer cache.

Fencing: a worker names the attempt it holds on every write. A write whose attempt is not the
job's current one, or whose job is no longer ``running``, changes nothing and reports so; a
stale worker that wakes up late cannot overwrite a newer attempt or a cancellation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from ragserve.db.pool import Connection, Database
from ragserve.jobs.models import Job, JobEvent, JobStatus
from ragserve.names import is_uuid

_JOB_COLUMNS = (
    "id, kind, status, collection, query, request, attempts, max_attempts, cached,"
    " cache_key, idempotency_key, request_hash, result, error,"
    " created_at, started_at, finished_at"
)


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


@dataclass(frozen=True)
class Attempt:
    """What a worker holds while it runs a job."""

    job_id: str
    number: int
    max_attempts: int
    kind: str
    collection: str
    request: dict[str, Any]
    cache_key: str | None


@dataclass(frozen=True)
class UploadedFile:
    source: str
    data: bytes | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None


def _job_values(job: NewJob) -> tuple[Any, ...]:
    """The first eight columns of a new job row, in the order both INSERTs list them."""
    return (
        job.kind,
        job.collection,
        job.query,
        Jsonb(job.request),
        job.request_hash,
        job.max_attempts,
        job.cache_key,
        job.idempotency_key,
    )


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- creating --------------------------------------------------------------------

    async def insert(self, conn: Connection, job: NewJob) -> dict[str, Any] | None:
        """Insert a queued job with its first event, in one statement (this is the hot path
        of every submission); None when an identical computation is already in flight."""
        return await (
            await conn.execute(
                "WITH job AS (INSERT INTO jobs (kind, collection, query, request, request_hash,"
                " max_attempts, cache_key, idempotency_key, event_seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1)"
                " ON CONFLICT (cache_key) WHERE status IN ('queued', 'running')"
                " AND cache_key IS NOT NULL AND idempotency_key IS NULL DO NOTHING"
                f" RETURNING {_JOB_COLUMNS}),"
                " event AS (INSERT INTO job_events (job_id, seq, attempt, type, data)"
                " SELECT id, 1, 0, 'status', %s FROM job)"
                " SELECT * FROM job",
                (*_job_values(job), Jsonb({"status": "queued", "attempt": 0})),
            )
        ).fetchone()

    async def insert_cached(
        self, conn: Connection, job: NewJob, result: dict[str, Any]
    ) -> dict[str, Any]:
        """A job that is born ``succeeded`` with a cached result; it never touches the queue."""
        row = await (
            await conn.execute(
                "INSERT INTO jobs (kind, collection, query, request, request_hash, max_attempts,"
                " cache_key, idempotency_key, status, cached, result, started_at, finished_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'succeeded', true, %s, now(), now())"
                f" RETURNING {_JOB_COLUMNS}",
                (*_job_values(job), Jsonb(result)),
            )
        ).fetchone()
        await self._append(conn, row["id"], "status", {"status": "succeeded", "attempt": 0})
        await self._append(conn, row["id"], "done", {"result": result, "cached": True})
        return row

    async def add_files(self, conn: Connection, job_id: str, files: Sequence[UploadedFile]) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO job_files (job_id, ordinal, source, data, text, metadata)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (job_id, i, f.source, f.data, f.text, Jsonb(f.metadata or {}))
                    for i, f in enumerate(files)
                ],
            )

    async def files(self, job_id: str) -> list[UploadedFile]:
        async with self.db.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT source, data, text, metadata FROM job_files"
                    " WHERE job_id = %s ORDER BY ordinal",
                    (job_id,),
                )
            ).fetchall()
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

    async def get_row(self, job_id: str, conn: Connection | None = None) -> dict[str, Any] | None:
        if not is_uuid(job_id):
            return None
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = %s"
        if conn is not None:
            return await (await conn.execute(sql, (job_id,))).fetchone()
        async with self.db.connection() as own:
            return await (await own.execute(sql, (job_id,))).fetchone()

    async def get(self, job_id: str) -> Job | None:
        row = await self.get_row(job_id)
        return Job.from_row(row) if row else None

    async def by_idempotency_key(self, conn: Connection, key: str) -> dict[str, Any] | None:
        return await (
            await conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE idempotency_key = %s", (key,)
            )
        ).fetchone()

    async def in_flight(self, conn: Connection, cache_key: str) -> dict[str, Any] | None:
        return await (
            await conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE cache_key = %s"
                " AND status IN ('queued', 'running') AND idempotency_key IS NULL",
                (cache_key,),
            )
        ).fetchone()

    async def list(self, status: JobStatus | None, limit: int) -> list[Job]:
        where = "WHERE status = %(status)s" if status else ""
        async with self.db.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs {where}"
                    " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
                    {"status": status.value if status else None, "limit": limit},
                )
            ).fetchall()
        return [Job.from_row(r) for r in rows]

    async def count_by_status(self) -> dict[str, int]:
        async with self.db.connection() as conn:
            rows = await (
                await conn.execute("SELECT status, count(*)::int AS n FROM jobs GROUP BY status")
            ).fetchall()
        return {r["status"]: r["n"] for r in rows}

    async def events_after(self, job_id: str, after: int, limit: int = 500) -> list[JobEvent]:
        async with self.db.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT seq, type, data FROM job_events WHERE job_id = %s AND seq > %s"
                    " ORDER BY seq LIMIT %s",
                    (job_id, after, limit),
                )
            ).fetchall()
        return [JobEvent(**r) for r in rows]

    # -- the worker's side (fenced) --------------------------------------------------

    async def start_attempt(self, job_id: str) -> Attempt | None:
        """Take the next attempt of a queued job, or of a running one whose worker died.

        None when the job was cancelled or finished meanwhile: the queue entry is stale.
        One statement (the job update and its ``running`` event), so one round trip.
        """
        async with self.db.connection() as conn:
            row = await (
                await conn.execute(
                    "WITH job AS (UPDATE jobs SET status = 'running', attempts = attempts + 1,"
                    " event_seq = event_seq + 1, started_at = coalesce(started_at, now()),"
                    " updated_at = now() WHERE id = %s AND status IN ('queued', 'running')"
                    " RETURNING id, attempts, max_attempts, kind, collection, request,"
                    " cache_key, event_seq),"
                    " event AS (INSERT INTO job_events (job_id, seq, attempt, type, data)"
                    " SELECT id, event_seq, attempts, 'status',"
                    " jsonb_build_object('status', 'running', 'attempt', attempts) FROM job)"
                    " SELECT id::text, attempts, max_attempts, kind, collection, request,"
                    " cache_key FROM job",
                    (job_id,),
                )
            ).fetchone()
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
        )

    async def append_event(self, attempt: Attempt, type_: str, data: dict[str, Any]) -> bool:
        """Store one event of ``attempt``; False if the attempt no longer holds the job."""
        async with self.db.connection() as conn:
            return await self._append(conn, attempt.job_id, type_, data, fence=attempt.number)

    async def succeed(
        self,
        attempt: Attempt,
        result: dict[str, Any],
        cache: tuple[str, int, float] | None = None,
    ) -> bool:
        """Record the result; with ``cache=(collection, generation, ttl_s)`` also cache it.

        One statement: the fenced update, the ``done`` event, the cache entry and the removal
        of the uploaded files commit together, in one round trip.
        """
        collection, generation, ttl_s = cache if cache is not None else (None, None, None)
        key = attempt.cache_key if cache is not None else None
        async with self.db.connection() as conn:
            row = await (
                await conn.execute(
                    "WITH job AS (UPDATE jobs SET status = 'succeeded', result = %(result)s,"
                    " error = NULL, finished_at = now(), updated_at = now(),"
                    " event_seq = event_seq + 1"
                    " WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'running'"
                    " RETURNING id, event_seq, attempts),"
                    " event AS (INSERT INTO job_events (job_id, seq, attempt, type, data)"
                    " SELECT id, event_seq, attempts, 'done', %(done)s FROM job),"
                    " cached AS (INSERT INTO answer_cache (cache_key, collection, generation,"
                    " job_id, result, expires_at) SELECT %(key)s, %(collection)s,"
                    " %(generation)s, id, %(result)s,"
                    " now() + make_interval(secs => %(ttl)s) FROM job"
                    " WHERE %(key)s::text IS NOT NULL"
                    " ON CONFLICT (cache_key) DO UPDATE SET collection = excluded.collection,"
                    " generation = excluded.generation, job_id = excluded.job_id,"
                    " result = excluded.result, created_at = now(),"
                    " expires_at = excluded.expires_at),"
                    " files AS (DELETE FROM job_files WHERE job_id IN (SELECT id FROM job))"
                    " SELECT count(*) AS n FROM job",
                    {
                        "id": attempt.job_id,
                        "attempt": attempt.number,
                        "result": Jsonb(result),
                        "done": Jsonb({"result": result}),
                        "key": key,
                        "collection": collection,
                        "generation": generation,
                        "ttl": ttl_s,
                    },
                )
            ).fetchone()
        return bool(row and row["n"])

    async def fail(
        self, attempt: Attempt, error: dict[str, str], result: dict[str, Any] | None = None
    ) -> bool:
        """Dead-letter: the job ends ``failed`` and stays inspectable (and retryable)."""
        async with self.db.transaction() as conn:
            if not await self._finish(conn, attempt, "failed", error=error, result=result):
                return False
            await self._append(conn, attempt.job_id, "error", error)
        return True

    async def requeue(
        self, attempt: Attempt, error: dict[str, str] | None, *, refund: bool = False
    ) -> bool:
        """Put the job back to ``queued`` before pgqueuer re-queues its entry.

        ``refund`` gives the attempt back: a worker that drains on SIGTERM did nothing wrong.
        """
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET status = 'queued', error = %s, updated_at = now(),"
                " max_attempts = max_attempts + %s"
                " WHERE id = %s AND attempts = %s AND status = 'running'",
                (
                    Jsonb(error) if error else None,
                    1 if refund else 0,
                    attempt.job_id,
                    attempt.number,
                ),
            )
            if cur.rowcount == 0:
                return False
            await self._append(
                conn,
                attempt.job_id,
                "status",
                {
                    "status": "queued",
                    "attempt": attempt.number,
                    "error": error,
                    "handed_back": refund,
                },
            )
        return True

    async def _finish(
        self,
        conn: Connection,
        attempt: Attempt,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
    ) -> bool:
        cur = await conn.execute(
            "UPDATE jobs SET status = %s, result = %s, error = %s, finished_at = now(),"
            " updated_at = now() WHERE id = %s AND attempts = %s AND status = 'running'",
            (
                status,
                Jsonb(result) if result is not None else None,
                Jsonb(error) if error else None,
                attempt.job_id,
                attempt.number,
            ),
        )
        return cur.rowcount == 1

    # -- the client's side -----------------------------------------------------------

    async def cancel(self, conn: Connection, job_id: str) -> dict[str, Any] | None:
        """Mark a queued or running job cancelled; returns the row before the change."""
        row = await (
            await conn.execute(
                "UPDATE jobs j SET status = 'cancelled', finished_at = now(), updated_at = now()"
                " FROM (SELECT id, status FROM jobs WHERE id = %s FOR UPDATE) before"
                " WHERE j.id = before.id AND j.status IN ('queued', 'running')"
                " RETURNING before.status AS previous, j.attempts",
                (job_id,),
            )
        ).fetchone()
        if row is not None:
            await self._append(
                conn, job_id, "status", {"status": "cancelled", "attempt": row["attempts"]}
            )
        return row

    async def reopen(self, conn: Connection, job_id: str, extra_attempts: int) -> bool:
        """Put a failed or cancelled job back in the queue with ``extra_attempts`` more tries."""
        cur = await conn.execute(
            "UPDATE jobs SET status = 'queued', max_attempts = attempts + %s, result = NULL,"
            " error = NULL, finished_at = NULL, updated_at = now()"
            " WHERE id = %s AND status IN ('failed', 'cancelled')",
            (extra_attempts, job_id),
        )
        if cur.rowcount == 0:
            return False
        await self._append(conn, job_id, "status", {"status": "queued", "attempt": 0})
        return True

    async def cached_result(self, conn: Connection, cache_key: str) -> dict[str, Any] | None:
        """A cached answer still valid: not expired, and its collection unchanged since."""
        row = await (
            await conn.execute(
                "SELECT a.result FROM answer_cache a JOIN collections c ON c.name = a.collection"
                " WHERE a.cache_key = %s AND a.generation = c.generation"
                " AND a.expires_at > now()",
                (cache_key,),
            )
        ).fetchone()
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
        condition = "id = %(id)s"
        if fence is not None:
            condition += " AND attempts = %(attempt)s AND status = 'running'"
        row = await (
            await conn.execute(
                "WITH bumped AS (UPDATE jobs SET event_seq = event_seq + 1"
                f" WHERE {condition} RETURNING id, event_seq, attempts)"
                " INSERT INTO job_events (job_id, seq, attempt, type, data)"
                " SELECT id, event_seq, attempts, %(type)s, %(data)s FROM bumped RETURNING seq",
                {"id": job_id, "attempt": fence, "type": type_, "data": Jsonb(data)},
            )
        ).fetchone()
        return row is not None
