"""Which worker processes are alive: each keeps a row in ``workers`` fresh while it runs.

pgqueuer records a heartbeat per picked queue entry, not per process, so an idle worker would
be invisible there. A row per process, refreshed every ``interval_s`` and valid for three
intervals, lets any API replica count the live workers from the database (``ragserve_workers``)
whichever one Prometheus scrapes. A worker that stops cleanly deletes its row; a killed one's
row expires, and retention deletes it later.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Final

from ragserve.db.pool import Database
from ragserve.jobs.store import WorkerIdentity

MISSED_BEATS: Final = 3
"""A worker is gone after this many missed refreshes (one may be late under load)."""

UPSERT_WORKER: Final = (
    "INSERT INTO workers (id, host, pid, version, queues, running, concurrency, expires_at)"
    " VALUES (%(id)s, %(host)s, %(pid)s, %(version)s, %(queues)s, %(running)s,"
    " %(concurrency)s, now() + make_interval(secs => %(valid_s)s))"
    " ON CONFLICT (id) DO UPDATE SET running = excluded.running, heartbeat_at = now(),"
    " expires_at = excluded.expires_at"
)

DELETE_WORKER: Final = "DELETE FROM workers WHERE id = %(id)s"


class WorkerPresence:
    def __init__(
        self,
        db: Database,
        worker: WorkerIdentity,
        queues: Sequence[str],
        interval_s: float,
        concurrency: int | None = None,
    ) -> None:
        """``concurrency``: the worker's job slots, for the API's wait estimates."""
        self.db = db
        self.worker = worker
        self.queues = list(queues)
        self.interval_s = interval_s
        self.concurrency = concurrency

    async def beat(self, running: int) -> None:
        """Say this worker is alive, running ``running`` jobs, for ``MISSED_BEATS`` intervals."""
        params = {
            "id": self.worker.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": self.worker.version,
            "queues": self.queues,
            "running": running,
            "concurrency": self.concurrency,
            "valid_s": self.interval_s * MISSED_BEATS,
        }
        async with self.db.connection() as conn:
            await conn.execute(UPSERT_WORKER, params)

    async def leave(self) -> None:
        async with self.db.connection() as conn:
            await conn.execute(DELETE_WORKER, {"id": self.worker.id})
