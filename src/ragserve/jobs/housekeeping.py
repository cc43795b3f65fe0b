"""A worker's background chores: its presence row and, now and then, retention.

One task per worker process, beside the queue manager. A failed chore is logged and tried
again at the next tick: a database outage must not end the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from ragserve.db.pool import Database
from ragserve.jobs.presence import WorkerPresence
from ragserve.jobs.retention import RetentionPolicy, prune
from ragserve.jobs.routing import return_orphans
from ragserve.settings import Settings

log = logging.getLogger(__name__)


class Housekeeping:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        presence: WorkerPresence,
        running: Callable[[], int],
        *,
        return_orphans: bool = False,
    ) -> None:
        self.db = db
        self.return_orphans = return_orphans
        self.presence = presence
        self.running = running
        self.interval_s = settings.worker_presence_s
        self.retention_every_s = settings.retention_interval_s
        self.policy = RetentionPolicy(settings.retention_days, settings.retention_uploads_days)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; then the worker's row is deleted (it is no longer live)."""
        # The first pruning waits one interval: a fleet started at once does not all try now.
        next_prune = time.monotonic() + self.retention_every_s
        try:
            while not stop.is_set():
                await self._chore("presence", self.presence.beat(self.running()))
                if self.return_orphans:
                    await self._chore("canary", self._return_orphans())
                if self.retention_every_s > 0 and time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.retention_every_s
                    await self._chore("retention", prune(self.db, self.policy))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)
        finally:
            await self._chore("presence", self.presence.leave())

    async def _return_orphans(self) -> None:
        async with self.db.connection() as conn:
            moved = await return_orphans(conn)
        if moved:
            log.warning(
                "canary jobs returned to the stable queues: no canary worker is alive",
                extra={"event": "canary.orphans_returned", "jobs": moved},
            )

    @staticmethod
    async def _chore(name: str, work: Awaitable[object]) -> None:
        try:
            await work
        except Exception as exc:  # the next tick tries again; the worker keeps running
            log.warning(
                "housekeeping failed", extra={"event": f"{name}.failed", "error": repr(exc)}
            )
