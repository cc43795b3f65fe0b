"""The queue is pgqueuer: this module is the only one that talks to it.

Entries carry only the job id; the job row is the source of truth. ``enqueue`` runs on the
connection of the caller's transaction, so the job row and its queue entry commit together.
Workers consume with ``QueueConsumer``, pgqueuer's ``QueueManager`` with fewer statements
per wake-up.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import asyncpg
import psycopg
from pgqueuer import Queries, QueueManager
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.domain.settings import db_settings
from pgqueuer.models import Job, JobId
from pgqueuer.ports.driver import NotifyCallback
from pgqueuer.ports.repository import EntrypointExecutionParameter
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


@functools.cache
def wait_probe_statement() -> str:
    """``queries.queue_wait_probe`` on pgqueuer's queue table (name read once, as above)."""
    return job_queries.queue_wait_probe(db_settings().qualified.queue_table)


def consumer(conn: asyncpg.Connection) -> QueueConsumer:
    """A worker's queue manager on ``conn`` (its own connection: LISTEN and the dequeues)."""
    return QueueConsumer(Queries(ConsumerDriver(conn)))


class QueueConsumer(QueueManager):
    """pgqueuer's ``QueueManager`` (1.6, pinned) with two to three statements fewer per
    wake-up, its semantics kept (docs/PERFORMANCE.md, "Worker: cheaper per job").

    On every wake-up (a NOTIFY of a new entry, or its poll timeout), pgqueuer dequeues until a
    dequeue comes back empty, then decides how long to wait with up to three more statements:
    is anything due, when is the next deferred entry due, is anything queued at all. With one
    new entry per wake-up, that is five statements for one job. Here:

    - ``fetch_jobs`` stops after a batch smaller than asked for, instead of asking again: the
      dequeue took everything due that it could (``FOR UPDATE SKIP LOCKED``, up to the batch
      and the worker's budget), and whatever became due since is seen by the probe below,
      which then shortens the wait to pgqueuer's ``min_dequeue_poll_interval``, as pgqueuer
      does after its empty dequeue.
    - ``ConsumerDriver`` does not wake it for entries removed (acknowledged, withdrawn),
      except while its own budget is nearly used up (``_listen_for_removals``).
    - ``_effective_dequeue_timeout`` asks its questions in one statement
      (``queries.queue_wait_probe``), with the same answers: due work → poll again soon; a
      deferred entry (a retry's backoff, a parked job) → wake when it is due; else the full
      timeout (which is also what retakes the entries of a dead worker).
    """

    async def fetch_jobs(
        self,
        batch_size: int,
        global_concurrency_limit: int | None,
        heartbeat_timeout: timedelta,
    ) -> AsyncGenerator[Job, None]:
        while not self.shutdown.is_set():
            entrypoints = {
                name: EntrypointExecutionParameter(
                    concurrency_limit=executor.parameters.concurrency_limit
                )
                for name, executor in self.entrypoint_registry.items()
            }
            jobs = await self.queries.dequeue(
                batch_size=batch_size,
                entrypoints=entrypoints,
                queue_manager_id=self.queue_manager_id,
                global_concurrency_limit=global_concurrency_limit,
                heartbeat_timeout=heartbeat_timeout,
            )
            for job in jobs:
                yield job
            if len(jobs) < batch_size:
                self._listen_for_removals(global_concurrency_limit, batch_size)
                return

    def _listen_for_removals(self, budget: int | None, batch_size: int) -> None:
        """Let removals wake this consumer only while its own budget may be what stopped the
        dequeue (fewer free slots than a batch): then an acknowledgement of one of its jobs
        frees a slot for an entry waiting in the queue (pgqueuer's own wake-up for that case;
        the budget is counted in the queue table, so the wake-up must follow the
        acknowledgement's ``DELETE``, not the job's end). With a batch's worth of free slots
        the short dequeue meant no more due entries, and removals cannot bring any."""
        driver = self.queries.driver
        if isinstance(driver, ConsumerDriver):
            driver.removals_wake = (
                budget is not None and len(self.job_context) + batch_size > budget
            )

    async def _effective_dequeue_timeout(self, dequeue_timeout: timedelta) -> timedelta:
        rows = await self.queries.driver.fetch(
            wait_probe_statement(), list(self.entrypoint_registry)
        )
        if rows and rows[0]["eligible"]:
            return self.min_dequeue_poll_interval
        eta = rows[0]["eta"] if rows else None
        if isinstance(eta, timedelta) and eta < dequeue_timeout:
            return max(eta, self.min_dequeue_poll_interval)
        return dequeue_timeout


def is_removal(payload: str | bytes | bytearray) -> bool:
    """Is this notification of pgqueuer's channel a ``DELETE`` on the queue table?"""
    try:
        event = json.loads(payload)
    except ValueError:
        return False
    return (
        isinstance(event, dict)
        and event.get("type") == "table_changed_event"
        and event.get("operation") == "delete"
    )


@dataclass(frozen=True)
class _SkipRemovals:
    """A listener that passes on every notification but removals, unless its driver wants
    them (compared by its callback, so that ``remove_listener`` finds it as pgqueuer's
    ``Relay`` does)."""

    callback: NotifyCallback
    driver: ConsumerDriver = field(compare=False)

    def __call__(self, payload: str | bytes | bytearray) -> None:
        if self.driver.removals_wake or not is_removal(payload):
            self.callback(payload)


class ConsumerDriver(AsyncpgDriver):
    """pgqueuer's asyncpg driver, minus the wake-ups that cannot bring a consumer work.

    pgqueuer's statement trigger notifies every consumer of every ``INSERT``, ``DELETE`` and
    ``TRUNCATE`` on the queue table (an ``UPDATE`` notifies nobody: a statement trigger sees
    no OLD/NEW). A ``DELETE`` is an entry acknowledged (done) or withdrawn (cancelled while
    queued): every consumer of the fleet wakes up and dequeues, for nothing, once per
    acknowledgement batch. What a removal could free is capacity: a per-entrypoint
    ``concurrency_limit`` (ragserve sets none) or this worker's own budget
    (``max_concurrent_tasks``). So removals are passed on only while the consumer says its
    budget may be what stopped its last dequeue (``removals_wake``): skipping them then too
    left a saturated worker waiting for its 0.1 s poll after each of its acknowledgements,
    and cut the no-op drain from 405 to 259 jobs/s (docs/PERFORMANCE.md).
    """

    removals_wake = False
    """Set by ``QueueConsumer`` while its budget is (nearly) used up."""

    async def add_listener(self, channel: str, callback: NotifyCallback) -> None:
        await super().add_listener(channel, _SkipRemovals(callback, self))

    async def remove_listener(self, channel: str, callback: NotifyCallback) -> None:
        await super().remove_listener(channel, _SkipRemovals(callback, self))


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
