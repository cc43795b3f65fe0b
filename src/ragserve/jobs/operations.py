"""Read-only views of the job system for people: a pageable job list, a job's timeline, the
live workers with the jobs they run, the dead letters and per-minute throughput.

The web console (and anyone else) reads them through the API; every figure comes from the
database, so any API replica answers the same and no Prometheus is needed. Statements are
named here, beside the one class that runs them.

Every view takes ``tenant`` (keyword-only, required): the jobs, counts, dead letters and
throughput are that tenant's (``None``: every tenant's, for admins). The queues' depths and the
live workers are the deployment's, shared by all tenants, and stay global; a worker's list of
running jobs shows only the tenant's (docs/SECURITY.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ragserve.db.pool import Database
from ragserve.jobs import monitoring
from ragserve.jobs.models import Job, JobStatus
from ragserve.jobs.queries import JOB_COLUMNS, SELECT_JOB, tenant_scope
from ragserve.names import is_uuid

# -- statements ----------------------------------------------------------------------------

LIST_JOBS_PAGE: Final = (
    f"WITH page AS (SELECT {JOB_COLUMNS} FROM jobs WHERE {tenant_scope()}"
    " AND (%(status)s::text IS NULL OR status = %(status)s)"
    " AND (%(kind)s::text IS NULL OR kind = %(kind)s)"
    " AND (%(collection)s::text IS NULL OR collection = %(collection)s)"
    " AND (%(before)s::uuid IS NULL OR (created_at, id) <"
    " (SELECT b.created_at, b.id FROM jobs b WHERE b.id = %(before)s::uuid"
    f" AND {tenant_scope('b.tenant')}))"
    " ORDER BY created_at DESC, id DESC LIMIT %(limit)s)"
    " SELECT page.*, a.worker_id::text AS worker_id, w.host AS worker_host,"
    " w.pid AS worker_pid FROM page"
    " LEFT JOIN job_attempts a ON a.job_id = page.id AND a.attempt = page.attempts"
    " LEFT JOIN workers w ON w.id = a.worker_id"
    " ORDER BY page.created_at DESC, page.id DESC"
)
"""A page of jobs, newest first, after the job ``before`` (a keyset cursor: pages stay stable
while new jobs arrive), each with the worker of its latest attempt (host and pid while that
worker is registered). A cursor naming no job (of the tenant's) gives an empty page."""

SELECT_TIMELINE_EVENTS: Final = (
    "SELECT seq, attempt, type, data, created_at FROM job_events"
    " WHERE job_id = %(job_id)s AND type <> 'token' ORDER BY seq"
)
"""Every event but the tokens (an answer has hundreds; they are summed up per attempt)."""

SELECT_TOKEN_SUMMARY: Final = (
    "SELECT attempt, count(*)::int AS tokens, min(created_at) AS first_at,"
    " max(created_at) AS last_at FROM job_events"
    " WHERE job_id = %(job_id)s AND type = 'token' GROUP BY attempt ORDER BY attempt"
)

SELECT_ATTEMPTS: Final = (
    "SELECT a.attempt, a.version, a.worker_id::text AS worker_id, w.host AS worker_host,"
    " w.pid AS worker_pid, a.started_at, a.finished_at, a.outcome FROM job_attempts a"
    " LEFT JOIN workers w ON w.id = a.worker_id WHERE a.job_id = %(job_id)s ORDER BY a.attempt"
)

SELECT_LIVE_WORKERS: Final = (
    "SELECT id::text AS id, host, pid, version, queues, running, started_at, heartbeat_at"
    " FROM workers WHERE expires_at > now() ORDER BY host, pid"
)

SELECT_RUNNING_ATTEMPTS: Final = (
    "SELECT a.worker_id::text AS worker_id, j.id::text AS job_id, j.kind, j.app, j.collection,"
    " j.query, a.started_at FROM jobs j JOIN job_attempts a"
    " ON a.job_id = j.id AND a.attempt = j.attempts"
    f" WHERE j.status = 'running' AND {tenant_scope('j.tenant')} ORDER BY a.started_at"
)
"""The running jobs (of the tenant's) with the worker that holds each (its latest attempt)."""

COUNT_JOBS_BY_STATUS: Final = (
    f"SELECT status, count(*)::int AS n FROM jobs WHERE {tenant_scope()} GROUP BY status"
)

SELECT_DEAD_LETTERS: Final = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'failed' AND {tenant_scope()}"
    " ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT %(limit)s"
)

SELECT_THROUGHPUT: Final = (
    "WITH minutes AS (SELECT generate_series(date_trunc('minute', now())"
    " - make_interval(mins => %(minutes)s - 1), date_trunc('minute', now()),"
    " interval '1 minute') AS minute),"
    " finished AS (SELECT date_trunc('minute', finished_at) AS minute, status,"
    " extract(epoch FROM finished_at - started_at)::float8 AS duration_s,"
    " extract(epoch FROM started_at - created_at)::float8 AS wait_s FROM jobs"
    " WHERE finished_at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)"
    f" AND NOT cached AND {tenant_scope()}),"
    " submitted AS (SELECT date_trunc('minute', created_at) AS minute, count(*)::int AS n"
    " FROM jobs WHERE created_at >="
    " date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)"
    f" AND {tenant_scope()} GROUP BY 1)"
    " SELECT m.minute, coalesce(s.n, 0) AS submitted,"
    " count(f.status) FILTER (WHERE f.status = 'succeeded')::int AS succeeded,"
    " count(f.status) FILTER (WHERE f.status = 'failed')::int AS failed,"
    " count(f.status) FILTER (WHERE f.status = 'cancelled')::int AS cancelled,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY f.duration_s)"
    " FILTER (WHERE f.status = 'succeeded') AS duration_p50_s,"
    " percentile_cont(0.95) WITHIN GROUP (ORDER BY f.duration_s)"
    " FILTER (WHERE f.status = 'succeeded') AS duration_p95_s,"
    " avg(f.wait_s) AS queue_wait_avg_s"
    " FROM minutes m LEFT JOIN finished f ON f.minute = m.minute"
    " LEFT JOIN submitted s ON s.minute = m.minute"
    " GROUP BY m.minute, s.n ORDER BY m.minute"
)
"""Per minute of the last ``minutes`` (the current one included, zeros where idle): jobs
submitted, jobs finished by outcome, the median and 95th percentile run time of the successful
ones and the mean queue wait of those that finished. Cached answers, which never ran, are left
out of the finished counts (they count as submitted)."""


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobListing:
    """A job with the worker of its latest attempt."""

    job: Job
    worker_id: str | None
    worker_host: str | None
    worker_pid: int | None


@dataclass(frozen=True)
class Timeline:
    job: Job
    events: list[dict[str, Any]]
    tokens: list[dict[str, Any]]
    attempts: list[dict[str, Any]]


@dataclass(frozen=True)
class Overview:
    queues: dict[str, monitoring.QueueFacts]
    statuses: dict[JobStatus, int]
    workers: list[dict[str, Any]]
    """Live workers, each with ``jobs``: the running jobs it holds."""
    dead_letters: list[Job]
    read_at: datetime


class Operations:
    """The read-only views; each method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def jobs_page(
        self,
        *,
        limit: int,
        status: JobStatus | None = None,
        kind: str | None = None,
        collection: str | None = None,
        before: str | None = None,
        tenant: str | None,
    ) -> list[JobListing]:
        """Up to ``limit`` of ``tenant``'s jobs, newest first, filtered; after the job ``before``
        if given (the caller checks that ``before`` is a UUID)."""
        params = {
            "tenant": tenant,
            "status": status.value if status is not None else None,
            "kind": kind,
            "collection": collection,
            "before": before,
            "limit": limit,
        }
        async with self.db.connection() as conn:
            rows = await (await conn.execute(LIST_JOBS_PAGE, params)).fetchall()
        return [
            JobListing(Job.from_row(r), r["worker_id"], r["worker_host"], r["worker_pid"])
            for r in rows
        ]

    async def timeline(self, job_id: str, *, tenant: str | None) -> Timeline | None:
        """The job, its events (tokens summed up per attempt) and its attempts; None if no
        job of ``tenant``'s has this id."""
        if not is_uuid(job_id):
            return None
        params = {"job_id": job_id}
        async with self.db.transaction() as conn:
            row = await (
                await conn.execute(SELECT_JOB, {"id": job_id, "tenant": tenant})
            ).fetchone()
            if row is None:
                return None
            events = await (await conn.execute(SELECT_TIMELINE_EVENTS, params)).fetchall()
            tokens = await (await conn.execute(SELECT_TOKEN_SUMMARY, params)).fetchall()
            attempts = await (await conn.execute(SELECT_ATTEMPTS, params)).fetchall()
        return Timeline(Job.from_row(row), events, tokens, attempts)

    async def overview(
        self,
        dead_letters: int,
        queues: Sequence[str] = monitoring.BUILT_IN_QUEUES,
        *,
        tenant: str | None,
    ) -> Overview:
        """Queues (each of ``queues`` even when empty) and live workers, both global; and
        ``tenant``'s job counts, running jobs and newest dead letters."""
        scope = {"tenant": tenant}
        async with self.db.transaction() as conn:
            facts = await monitoring.read_facts(conn, queues)
            counts = await (await conn.execute(COUNT_JOBS_BY_STATUS, scope)).fetchall()
            workers = await (await conn.execute(SELECT_LIVE_WORKERS)).fetchall()
            running = await (await conn.execute(SELECT_RUNNING_ATTEMPTS, scope)).fetchall()
            dead = await (
                await conn.execute(SELECT_DEAD_LETTERS, {**scope, "limit": dead_letters})
            ).fetchall()
            now = await (await conn.execute("SELECT now() AS now")).fetchone()
        by_status = {r["status"]: r["n"] for r in counts}
        for worker in workers:
            worker["jobs"] = [j for j in running if j["worker_id"] == worker["id"]]
        assert now is not None  # SELECT now() always has a row
        return Overview(
            queues=facts.queues,
            statuses={s: by_status.get(s.value, 0) for s in JobStatus},
            workers=workers,
            dead_letters=[Job.from_row(r) for r in dead],
            read_at=now["now"],
        )

    async def throughput(self, minutes: int, *, tenant: str | None) -> list[dict[str, Any]]:
        """One row per minute of the last ``minutes``, oldest first, of ``tenant``'s jobs (see
        SELECT_THROUGHPUT)."""
        params = {"minutes": minutes, "tenant": tenant}
        async with self.db.connection() as conn:
            return await (await conn.execute(SELECT_THROUGHPUT, params)).fetchall()
