"""The queue is pgqueuer: this module is the only one that talks to it for producers.

Entries carry only the job id; the job row is the source of truth. ``enqueue`` runs on the
connection of the caller's transaction, so the job row and its queue entry commit together.
"""

from __future__ import annotations

from pgqueuer import Queries
from pgqueuer.models import JobId

from ragserve.db.pool import Connection

CANCEL_CHANNEL = "ragserve_job_cancel"


async def enqueue(conn: Connection, kind: str, job_id: str) -> int:
    """Add a queue entry for ``job_id`` (entrypoint = job kind) in ``conn``'s transaction."""
    ids = await Queries.from_psycopg_connection(conn).enqueue(kind, job_id.encode())
    return int(ids[0])


async def withdraw(conn: Connection, queue_job_id: int) -> None:
    """Remove a queued entry (the job was cancelled before any worker took it)."""
    await Queries.from_psycopg_connection(conn).mark_job_as_cancelled([JobId(queue_job_id)])


async def signal_cancel(conn: Connection, job_id: str) -> None:
    """Tell whichever worker runs ``job_id`` to stop it (delivered at commit)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, job_id))
