"""How long a new job will wait before a worker starts it: ``estimated_start_s``.

The model, per queue (a pgqueuer entrypoint: ``answer``, ``ingest``, each app's own queue,
their canary twins ``queue@canary``):

- ``slots``: job slots of the live workers serving the queue, each worker's
  ``RAGSERVE_WORKER_CONCURRENCY`` (``workers.concurrency``, migration 0008);
- ``service_s``: mean time from start to finish of the last ``SAMPLES`` jobs of the queue
  (``JOB_QUEUE``; a canary twin shares its queue's) that ran (not cached, not cancelled) in
  the last ``WINDOW_S``: a slot frees every ``service_s / slots`` seconds while all are busy;
- ``waiting`` entries ahead and ``running`` ones.

A job with ``ahead`` entries before it starts when ``ahead + 1 - free`` slots have freed, so
after ``(ahead + 1 - free) * service_s / slots`` seconds (``free = slots - running``; 0 when a
slot is free already). Why the mean service time and not completions per second over a window:
completions per second equal the *arrival* rate while the queue keeps up, which says nothing
of the capacity; ``slots / service_s`` is the capacity, and ``service_s`` is measured under the
current load, so a slower LLM under more concurrency shows up in it.

Unknown (``None``): no job of that queue ran in the window (a new deployment, or idle for
longer than ``WINDOW_S``). No live worker serves the queue (scaled to zero): as if one worker
with this process's ``RAGSERVE_WORKER_CONCURRENCY`` had just joined; its start-up is not
included.

The submission path is hot (hundreds of ``202`` a second per API process), so a process reads
the loads once per ``ttl_s`` (one statement, on the submitting transaction's connection, by one
request while the others wait for it) and counts the jobs it enqueued itself since.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from pgqueuer.domain.settings import DBSettings
from psycopg import sql

from ragserve.db.pool import Connection
from ragserve.jobs.apps import ANSWER_QUEUE, RAG_APP

WINDOW_S: Final = 600.0
"""Completions older than this do not describe the current service time."""
SAMPLES: Final = 100
"""Most recent completions averaged per queue (bounds the cost of the read)."""

JOB_QUEUE: Final = f"coalesce(CASE WHEN app = '{RAG_APP}' THEN '{ANSWER_QUEUE}' ELSE app END, kind)"
"""The queue a job row runs on, in SQL (what ``AppRegistry.queue_of`` says in Python): its
app's (``rag``: ``answer``; any other app: the app's name), else its kind (``ingest``, and
answer jobs written before apps). Written exactly so in the index ``jobs_queue_finished_idx``
(migration 0008), which the service-time read below uses."""

_LOADS: Final = (
    "WITH entries AS (SELECT entrypoint AS queue,"
    " count(*) FILTER (WHERE status = 'queued') AS waiting,"
    " count(*) FILTER (WHERE status = 'picked') AS running"
    " FROM {queue} WHERE status IN ('queued', 'picked') GROUP BY entrypoint),"
    " slots AS (SELECT q.queue, sum(coalesce(w.concurrency, %(default_concurrency)s)) AS slots"
    " FROM workers w CROSS JOIN LATERAL unnest(w.queues) AS q(queue)"
    " WHERE w.expires_at > now() GROUP BY q.queue),"
    " names AS (SELECT queue FROM entries UNION SELECT queue FROM slots"
    " UNION SELECT unnest(%(queues)s::text[]))"
    " SELECT n.queue, coalesce(e.waiting, 0)::int AS waiting,"
    " coalesce(e.running, 0)::int AS running, coalesce(s.slots, 0)::int AS slots,"
    " recent.service_s, recent.samples"
    " FROM names n LEFT JOIN entries e USING (queue) LEFT JOIN slots s USING (queue)"
    " CROSS JOIN LATERAL (SELECT avg(extract(epoch FROM r.finished_at - r.started_at))::float8"
    " AS service_s, count(*)::int AS samples FROM (SELECT finished_at, started_at FROM jobs"
    f" WHERE {JOB_QUEUE} = split_part(n.queue, '@', 1) AND finished_at IS NOT NULL AND NOT cached"
    " AND status IN ('succeeded', 'failed') AND started_at IS NOT NULL"
    " AND finished_at > now() - make_interval(secs => %(window_s)s)"
    " ORDER BY finished_at DESC LIMIT %(samples)s) r) recent"
)
"""Every queue that has entries, live workers, or is named in ``queues``, with its load."""


@dataclass(frozen=True)
class QueueLoad:
    """What decides the wait in one queue, as read at one moment."""

    queue: str
    waiting: int
    """Entries waiting (retries in their backoff included: they go first once due)."""
    running: int
    slots: int
    """Job slots of the live workers serving this queue; 0 when none does."""
    service_s: float | None
    """Mean start-to-finish time of recent jobs of this queue; None when none ran lately."""
    samples: int = 0


def expected_wait_s(load: QueueLoad, ahead: int, default_slots: int) -> float | None:
    """Seconds until a job with ``ahead`` entries before it starts; None while unknown.

    ``default_slots``: the slots assumed when no live worker serves the queue.
    """
    if load.service_s is None:
        return None
    slots = load.slots if load.slots > 0 else default_slots
    free = max(0, slots - load.running)
    completions_needed = ahead + 1 - free
    if completions_needed <= 0:
        return 0.0
    return completions_needed * load.service_s / slots


def wait_falls_under(wait_s: float, limit_s: float) -> float:
    """Seconds until a wait of ``wait_s`` falls to ``limit_s`` if nothing new arrives: each
    completion moves every waiting job one place up, so the wait falls by a second a second."""
    return max(0.0, wait_s - limit_s)


async def read_loads(
    conn: Connection, queues: Iterable[str], default_concurrency: int
) -> dict[str, QueueLoad]:
    """The load of every queue with entries or workers, and of each of ``queues``."""
    statement = sql.SQL(_LOADS).format(queue=sql.SQL(DBSettings().qualified.queue_table))
    params = {
        "queues": list(queues),
        "default_concurrency": default_concurrency,
        "window_s": WINDOW_S,
        "samples": SAMPLES,
    }
    rows = await (await conn.execute(statement, params)).fetchall()
    return {
        row["queue"]: QueueLoad(
            row["queue"],
            row["waiting"],
            row["running"],
            row["slots"],
            row["service_s"],
            row["samples"],
        )
        for row in rows
    }


class QueueEstimator:
    """The per-process cache of queue loads behind every ``estimated_start_s``.

    ``default_concurrency``: this process's ``RAGSERVE_WORKER_CONCURRENCY``, assumed for
    workers that do not report theirs and for a queue no worker serves.
    """

    def __init__(
        self,
        queues: Iterable[str],
        default_concurrency: int,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queues = list(queues)
        self.default_concurrency = default_concurrency
        self.ttl_s = ttl_s
        self._clock = clock
        self._loads: dict[str, QueueLoad] = {}
        self._read_at = float("-inf")
        self._enqueued_since: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def load(self, conn: Connection, queue: str) -> QueueLoad:
        """The queue's load, at most ``ttl_s`` old, plus the entries this process has added
        since it was read."""
        if self._clock() - self._read_at > self.ttl_s:
            async with self._lock:  # one reader; the others then find it fresh
                if self._clock() - self._read_at > self.ttl_s:
                    self._loads = await read_loads(conn, self.queues, self.default_concurrency)
                    self._read_at = self._clock()
                    self._enqueued_since = {}
        load = self._loads.get(queue) or QueueLoad(queue, 0, 0, 0, None)
        added = self._enqueued_since.get(queue, 0)
        if added:
            load = QueueLoad(
                queue, load.waiting + added, load.running, load.slots, load.service_s, load.samples
            )
        return load

    async def wait_s(self, conn: Connection, queue: str) -> float | None:
        """Expected wait of a job entering ``queue`` now (behind everything waiting).

        Less the time since the loads were read: the jobs running then have been finishing
        meanwhile, and while all slots are busy every completion moves each waiting job up,
        so a wait falls by a second a second (without this, the estimate is biased up by up
        to ``ttl_s``).
        """
        load = await self.load(conn, queue)
        wait = expected_wait_s(load, load.waiting, self.default_concurrency)
        if wait is None:
            return None
        return max(0.0, wait - (self._clock() - self._read_at))

    def enqueued(self, queue: str) -> None:
        """This process has just added an entry to ``queue``."""
        self._enqueued_since[queue] = self._enqueued_since.get(queue, 0) + 1
