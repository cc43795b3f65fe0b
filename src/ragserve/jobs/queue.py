"""The queue is pgqueuer: this module is the only one that talks to it for producers.

Entries carry only the job id; the job row is the source of truth. ``enqueue`` runs on the
connection of the caller's transaction, so the job row and its queue entry commit together.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import psycopg
from pgqueuer import Queries
from pgqueuer.domain.settings import db_settings
from pgqueuer.models import JobId
from psycopg import sql

from ragserve.db.pool import Connection
from ragserve.jobs import queries as job_queries

CANCEL_CHANNEL = "ragserve_job_cancel"


async def enqueue(conn: Connection, queue: str, job_id: str) -> None:
    """Add an entry for ``job_id`` to ``queue`` (a pgqueuer entrypoint: the job's kind, or
    its canary queue, see ``ragserve.jobs.routing``) in ``conn``'s transaction."""
    await _queries(conn).enqueue(queue, job_id.encode())


@functools.cache
def insert_job_and_entry_statement() -> str:
    """``queries.insert_queued_job_and_entry`` on pgqueuer's tables (names read once: they
    come from pgqueuer's ``PGQUEUER_*`` settings, fixed for the process)."""
    names = db_settings().qualified
    return job_queries.insert_queued_job_and_entry(names.queue_table, names.queue_table_log)


async def withdraw(conn: Connection, job_id: str) -> None:
    """Remove the queued entry of ``job_id`` (cancelled before any worker took it).

    Entries are found by payload rather than by a stored entry id: cancelling is rare, and
    not storing the id saves a write on every submission. Only queued entries exist then.
    """
    queries = _queries(conn)
    table = queries.qbe.settings.queue_table
    rows = await (
        await conn.execute(
            sql.SQL("SELECT id FROM {} WHERE payload = %s AND status = 'queued'").format(
                sql.Identifier(table)
            ),
            (job_id.encode(),),
        )
    ).fetchall()
    if rows:
        await queries.mark_job_as_cancelled([JobId(row["id"]) for row in rows])


async def signal_cancel(conn: Connection, job_id: str) -> None:
    """Tell whichever worker runs ``job_id`` to stop it (delivered at commit)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, job_id))


def _queries(conn: Connection) -> Queries:
    """pgqueuer on ``conn``. Its annotation asks for tuple rows, but it reads through cursors
    with a row factory of its own, so our dict-row connections serve it as they are."""
    return Queries.from_psycopg_connection(cast(psycopg.AsyncConnection[Any], conn))
