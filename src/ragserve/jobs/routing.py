"""Canary routing: a share of new jobs goes to the queues that canary workers serve.

Every kind of job has a stable queue (``answer``) and a canary one (``answer@canary``). Workers
started with ``RAGSERVE_WORKER_TRACK=canary`` serve only the canary queues, all others only the
stable ones. The API sends ``RAGSERVE_CANARY_PERCENT`` % of new jobs to a canary queue, but only
while a canary worker is alive (its presence row lists that queue), so no job is routed to a
version that is not running. If the canary workers go away afterwards (rollback, crash),
stable workers move what still waits in the canary queues back to the stable ones
(``return_orphans``), so nothing waits for a version that is not running any more.

Promote: run the new version as stable workers and set the percentage to 0. Roll back: set
it to 0 and stop the canary workers; their queued jobs come back by themselves.
"""

from __future__ import annotations

import random
import time
from typing import Final, Literal

from pgqueuer.domain.settings import DBSettings
from psycopg import sql

from ragserve.db.pool import Connection

Track = Literal["stable", "canary"]

CANARY_SUFFIX: Final = "@canary"
_LIVENESS_TTL_S: Final = 2.0
"""How long one answer to "is a canary worker alive?" is reused (one query per 2 s at most)."""

_CANARY_ALIVE: Final = (
    "SELECT EXISTS (SELECT 1 FROM workers WHERE expires_at > now() AND %(queue)s = ANY(queues))"
    " AS alive"
)

_RETURN_ORPHANS: Final = (
    "UPDATE {queue} SET entrypoint = split_part(entrypoint, '@', 1)"
    " WHERE status IN ('queued', 'picked') AND entrypoint LIKE '%%' || %(suffix)s"
    " AND NOT EXISTS (SELECT 1 FROM workers w"
    " WHERE w.expires_at > now() AND {queue}.entrypoint = ANY(w.queues))"
)


def queue_name(kind: str, track: Track) -> str:
    """The queue (pgqueuer entrypoint) of jobs of ``kind`` on ``track``."""
    return kind + CANARY_SUFFIX if track == "canary" else kind


class CanaryRouter:
    """Chooses the queue of each new job. Holds the last liveness answers, nothing else."""

    def __init__(self, percent: float, draw: random.Random | None = None) -> None:
        self.percent = percent
        self._draw = draw or random.Random()
        self._alive: dict[str, tuple[float, bool]] = {}

    async def queue_for(self, conn: Connection, kind: str) -> str:
        if self.percent <= 0 or self._draw.random() * 100 >= self.percent:
            return kind
        canary = queue_name(kind, "canary")
        return canary if await self._canary_alive(conn, canary) else kind

    async def _canary_alive(self, conn: Connection, queue: str) -> bool:
        checked_at, alive = self._alive.get(queue, (float("-inf"), False))
        if time.monotonic() - checked_at > _LIVENESS_TTL_S:
            row = await (await conn.execute(_CANARY_ALIVE, {"queue": queue})).fetchone()
            alive = bool(row and row["alive"])
            self._alive[queue] = (time.monotonic(), alive)
        return alive


async def return_orphans(conn: Connection) -> int:
    """Move canary entries that no live worker serves back to their stable queue.

    Waiting entries, and also picked ones: their worker is gone (no live worker serves the
    queue), and pgqueuer hands a picked entry whose heartbeat stopped to a worker serving its
    queue, which is now a stable one.
    """
    table = sql.SQL(DBSettings().qualified.queue_table)
    statement = sql.SQL(_RETURN_ORPHANS).format(queue=table)
    cursor = await conn.execute(statement, {"suffix": CANARY_SUFFIX})
    return cursor.rowcount
