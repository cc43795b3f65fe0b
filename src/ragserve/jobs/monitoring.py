"""Facts about the queue and the workers that live in the database, read at scrape time.

Every API replica answers the same, so Prometheus may scrape any of them (or all: dashboards
take ``max`` over instances). One round trip; the queue part uses pgqueuer's partial indexes
on queued entries. A second one, when asked, for each queue's expected wait
(``ragserve.jobs.estimates``): the KEDA target (deploy/k8s/keda-scaledobject.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, get_args

from pgqueuer.domain.settings import DBSettings
from psycopg import sql

from ragserve.db.pool import Connection
from ragserve.jobs.estimates import expected_wait_s, read_loads
from ragserve.jobs.models import JobKind

BUILT_IN_QUEUES: Final = get_args(JobKind)
"""Queues reported even when empty, so a dashboard shows 0 rather than no data."""

_FACTS: Final = (
    "SELECT 'queue' AS fact, entrypoint AS name, count(*) FILTER (WHERE status = 'queued')"
    " AS depth, count(*) FILTER (WHERE status = 'picked') AS running,"
    " coalesce(extract(epoch FROM now() - min(execute_after)"
    " FILTER (WHERE status = 'queued' AND execute_after <= now())), 0)::float8 AS oldest_s"
    " FROM {queue} WHERE status IN ('queued', 'picked') GROUP BY entrypoint"
    " UNION ALL SELECT 'workers', version, count(*), sum(running), 0"
    " FROM workers WHERE expires_at > now() GROUP BY version"
)


@dataclass(frozen=True)
class QueueFacts:
    depth: int
    """Entries waiting (including retries whose backoff has not passed)."""
    running: int
    oldest_s: float
    """Age of the oldest entry that is due and still waiting; 0 when none is."""


@dataclass(frozen=True)
class DatabaseFacts:
    queues: dict[str, QueueFacts]
    workers_by_version: dict[str, int]
    expected_wait_s: dict[str, float] = field(default_factory=dict)
    """Per queue, the wait of a job submitted now; queues whose wait is unknown are left out."""

    @property
    def workers(self) -> int:
        return sum(self.workers_by_version.values())


async def read_facts(conn: Connection, default_slots: int | None = None) -> DatabaseFacts:
    """The facts; with ``default_slots`` (the job slots assumed for a worker that reports
    none, see ``ragserve.jobs.estimates``) also each queue's expected wait."""
    queue_table = DBSettings().qualified.queue_table
    statement = sql.SQL(_FACTS).format(queue=sql.SQL(queue_table))
    rows = await (await conn.execute(statement)).fetchall()
    queues = {name: QueueFacts(0, 0, 0.0) for name in BUILT_IN_QUEUES}
    workers: dict[str, int] = {}
    for row in rows:
        if row["fact"] == "queue":
            queues[row["name"]] = QueueFacts(row["depth"], row["running"], row["oldest_s"])
        else:
            workers[row["name"]] = row["depth"]
    waits: dict[str, float] = {}
    if default_slots is not None:
        for name, load in (await read_loads(conn, BUILT_IN_QUEUES, default_slots)).items():
            if (wait := expected_wait_s(load, load.waiting, default_slots)) is not None:
                waits[name] = wait
    return DatabaseFacts(queues, workers, waits)
