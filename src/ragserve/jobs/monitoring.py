"""Facts about the queue and the workers that live in the database, read at scrape time.

Every API replica answers the same, so Prometheus may scrape any of them (or all: dashboards
take ``max`` over instances). One round trip; the queue part uses pgqueuer's partial indexes
on queued entries. A second one, when asked, for each queue's expected wait
(``ragserve.jobs.estimates``): the KEDA target (deploy/k8s/keda-scaledobject.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from pgqueuer.domain.settings import DBSettings
from psycopg import sql

from ragserve.db.pool import Connection
from ragserve.jobs.estimates import expected_wait_s, read_loads

BUILT_IN_QUEUES: Final = ("answer", "ingest")
"""The queues of answer and ingest jobs. They, and the queues of the process's apps
(``AppRegistry.queues``), are reported even when empty, so a dashboard shows 0 rather than
no data."""

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


async def read_facts(
    conn: Connection, queues: Sequence[str] = BUILT_IN_QUEUES, default_slots: int | None = None
) -> DatabaseFacts:
    """The facts; every queue of ``queues`` is among them, empty or not. With
    ``default_slots`` (the job slots assumed for a worker that reports none, see
    ``ragserve.jobs.estimates``) also the expected wait of each queue whose wait is known."""
    queue_table = DBSettings().qualified.queue_table
    statement = sql.SQL(_FACTS).format(queue=sql.SQL(queue_table))
    rows = await (await conn.execute(statement)).fetchall()
    by_queue = {name: QueueFacts(0, 0, 0.0) for name in queues}
    workers: dict[str, int] = {}
    for row in rows:
        if row["fact"] == "queue":
            by_queue[row["name"]] = QueueFacts(row["depth"], row["running"], row["oldest_s"])
        else:
            workers[row["name"]] = row["depth"]
    waits: dict[str, float] = {}
    if default_slots is not None:
        for name, load in (await read_loads(conn, queues, default_slots)).items():
            if (wait := expected_wait_s(load, load.waiting, default_slots)) is not None:
                waits[name] = wait
    return DatabaseFacts(by_queue, workers, waits)
