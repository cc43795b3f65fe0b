"""Retention: the tables that grow with every job are pruned, so they stop growing.

- Finished jobs (succeeded, failed, cancelled) older than ``RAGSERVE_RETENTION_DAYS``, with
  their events, attempts and files (``ON DELETE CASCADE``), and pgqueuer's log and statistics
  of that age.
- Uploaded bytes of failed or cancelled ingest jobs after ``RAGSERVE_RETENTION_UPLOADS_DAYS``
  (kept that long so that a manual retry can still read them; succeeded jobs drop theirs at once).
- Expired answer-cache entries, and rows of workers that died long ago.

Queued and running jobs are never touched, however old. Deletes go in batches, each its own
short transaction, so that pruning a large backlog never holds long locks. Workers run it every
``RAGSERVE_RETENTION_INTERVAL_S``; a session advisory lock lets one process at a time do it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Final

from pgqueuer.domain.settings import DBSettings
from psycopg import sql

from ragserve.db.pool import Connection, Database

log = logging.getLogger(__name__)

LOCK_KEY: Final = 0x7261_6772  # "ragr": one pruner per database at a time
BATCH: Final = 1000
DEAD_WORKER_KEEP_S: Final = 86400.0  # a dead worker's row stays a day, for inspection

_DELETE_OLD_JOBS: Final = (
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs"
    " WHERE status IN ('succeeded', 'failed', 'cancelled')"
    " AND finished_at < now() - make_interval(secs => %(age_s)s) LIMIT %(batch)s)"
)
_DELETE_OLD_UPLOADS: Final = (
    "DELETE FROM job_files WHERE job_id IN (SELECT j.id FROM jobs j"
    " WHERE j.status IN ('failed', 'cancelled')"
    " AND j.finished_at < now() - make_interval(secs => %(age_s)s)"
    " AND EXISTS (SELECT 1 FROM job_files f WHERE f.job_id = j.id) LIMIT %(batch)s)"
)
_DELETE_EXPIRED_CACHE: Final = (
    "DELETE FROM answer_cache WHERE cache_key IN (SELECT cache_key FROM answer_cache"
    " WHERE expires_at < now() LIMIT %(batch)s)"
)
_DELETE_DEAD_WORKERS: Final = (
    "DELETE FROM workers WHERE expires_at < now() - make_interval(secs => %(age_s)s)"
)
_DELETE_OLD_QUEUE_ROWS: Final = (
    "DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"
    " WHERE created < now() - make_interval(secs => %(age_s)s) LIMIT %(batch)s)"
)
"""pgqueuer's log and its per-second statistics (both have ``id`` and ``created``)."""


@dataclass(frozen=True)
class RetentionPolicy:
    jobs_days: float
    uploads_days: float


@dataclass
class PruneReport:
    """Rows deleted by one run."""

    jobs: int = 0
    uploads: int = 0
    cache_entries: int = 0
    workers: int = 0
    queue_log: int = 0
    """Rows of pgqueuer's log and statistics."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


async def prune(db: Database, policy: RetentionPolicy, batch: int = BATCH) -> PruneReport | None:
    """Delete what the policy no longer keeps; None when another process is pruning now."""
    async with db.connection() as conn:
        row = await (
            await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (LOCK_KEY,))
        ).fetchone()
        if not (row and row["got"]):
            return None
        try:
            report = await _prune(conn, policy, batch)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    if any(report.as_dict().values()):
        log.info("retention pruned", extra={"event": "retention.pruned", **report.as_dict()})
    return report


async def _prune(conn: Connection, policy: RetentionPolicy, batch: int) -> PruneReport:
    jobs_age = {"age_s": policy.jobs_days * 86400.0, "batch": batch}
    pgqueuer = DBSettings().qualified
    queue_log, queue_stats = (
        sql.SQL(_DELETE_OLD_QUEUE_ROWS).format(table=sql.SQL(table))
        for table in (pgqueuer.queue_table_log, pgqueuer.statistics_table)
    )
    return PruneReport(
        # Uploads first: a job old enough for both goes with its files anyway.
        uploads=await _in_batches(
            conn, _DELETE_OLD_UPLOADS, {"age_s": policy.uploads_days * 86400.0, "batch": batch}
        ),
        jobs=await _in_batches(conn, _DELETE_OLD_JOBS, jobs_age),
        cache_entries=await _in_batches(conn, _DELETE_EXPIRED_CACHE, {"batch": batch}),
        workers=await _in_batches(conn, _DELETE_DEAD_WORKERS, {"age_s": DEAD_WORKER_KEEP_S}),
        queue_log=await _in_batches(conn, queue_log, jobs_age)
        + await _in_batches(conn, queue_stats, jobs_age),
    )


async def _in_batches(
    conn: Connection, statement: str | sql.Composed, params: dict[str, float | int]
) -> int:
    """Repeat a (batch-limited) delete until it deletes less than a batch; total deleted."""
    total = 0
    while True:
        deleted = (await conn.execute(statement, params)).rowcount
        total += deleted
        if "batch" not in params or deleted < params["batch"]:
            return total
