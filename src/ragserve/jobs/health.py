"""A worker's ``/healthz`` and ``/readyz``, for orchestrators (``ragserve worker --health-port``).

The answers are computed in the event loop and served from a thread. A thread, because the
one failure a liveness probe exists for is a wedged loop (a blocking call, a CPU-bound step
that never yields): a server inside that loop could not answer at all, and a probe that times
out says less than one that explains. The loop stamps a heartbeat every ``TICK_S`` and
refreshes the readiness checks every ``CHECK_S``; the thread only reads those values.

- ``/healthz``: 200 unless the loop has not ticked for ``RAGSERVE_HEALTH_LOOP_STALL_S`` or the
  database has been unreachable for ``RAGSERVE_HEALTH_DB_LOST_S`` (a restart may then help).
- ``/readyz``: 200 when the database answers, the schema is current, the embedding model is
  loaded and works, and the worker is taking jobs (not draining, queue connected). The model
  endpoints' circuits are reported under ``circuits`` but do not decide readiness: a worker
  whose circuit is open is healthy, it parks jobs until the endpoint is back.

Plain ``http.server``: a bare worker loads no web framework.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from ragserve.db.migrate import schema_is_current
from ragserve.db.pool import Database
from ragserve.jobs.worker import Worker
from ragserve.kb.breaker import describe_circuits
from ragserve.kb.readiness import EmbedderCheck
from ragserve.settings import Settings

log = logging.getLogger(__name__)

TICK_S = 0.5
CHECK_S = 2.0


@dataclass(frozen=True)
class ReadyChecks:
    database: bool
    schema_current: bool
    models: bool
    consuming: bool
    draining: bool

    @property
    def ready(self) -> bool:
        return (
            self.database
            and self.schema_current
            and self.models
            and self.consuming
            and not self.draining
        )


NOT_CHECKED = ReadyChecks(False, False, False, False, False)


class WorkerHealth:
    """What the probes report, kept fresh by ``watch`` (a task in the worker's loop)."""

    def __init__(self, worker: Worker, db: Database, models: EmbedderCheck, settings: Settings):
        self.worker = worker
        self.db = db
        self.models = models
        self.loop_stall_s = settings.health_loop_stall_s
        self.db_lost_s = settings.health_db_lost_s
        # Written by the loop, read by the probe thread: single attribute stores are atomic.
        self.last_tick = time.monotonic()
        self.checks = NOT_CHECKED
        self.db_lost_since: float | None = None

    async def watch(self) -> None:
        next_check = 0.0
        while True:
            self.last_tick = time.monotonic()
            if self.last_tick >= next_check:
                self.checks = await self._check()
                next_check = time.monotonic() + CHECK_S
                self.last_tick = time.monotonic()
            await asyncio.sleep(TICK_S)

    async def _check(self) -> ReadyChecks:
        began = time.monotonic()
        database = schema = False
        try:
            async with asyncio.timeout(self.db.timeout_s), self.db.connection() as conn:
                database = True
                schema = await schema_is_current(conn)
        except Exception as exc:
            log.warning("database not ready", extra={"event": "ready.database", "error": str(exc)})
            database = False
        if database:
            self.db_lost_since = None
        elif self.db_lost_since is None:
            self.db_lost_since = began
        return ReadyChecks(
            database=database,
            schema_current=schema,
            models=await self.models.ready(),
            consuming=self.worker.consuming,
            draining=self.worker.draining.is_set(),
        )

    # -- read from the probe thread --------------------------------------------------

    def liveness(self) -> tuple[bool, dict[str, object]]:
        now = time.monotonic()
        stalled_s = now - self.last_tick
        lost_since = self.db_lost_since
        db_lost_s = 0.0 if lost_since is None else now - lost_since
        alive = stalled_s < self.loop_stall_s and db_lost_s < self.db_lost_s
        return alive, {
            "status": "ok" if alive else "unhealthy",
            "loop_stalled_s": round(stalled_s, 3),
            "database_lost_s": round(db_lost_s, 3),
        }

    def readiness(self) -> tuple[bool, dict[str, object]]:
        checks = self.checks
        # Checks a stalled loop could not refresh are stale: not ready either.
        fresh = time.monotonic() - self.last_tick < self.loop_stall_s
        ready = checks.ready and fresh
        return ready, {
            "ready": ready,
            "checks": {**asdict(checks), "fresh": fresh},
            # Read from the probe thread: a snapshot of a few attributes, good enough here.
            "circuits": describe_circuits(self.worker.breakers),
        }


class HealthServer:
    """``/healthz`` and ``/readyz`` on ``port``, from a daemon thread."""

    def __init__(self, health: WorkerHealth, host: str, port: int) -> None:
        self.health = health
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(health))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="ragserve-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("health server listening", extra={"event": "health.started", "port": self.port})

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def _handler_for(health: WorkerHealth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/healthz":
                ok, body = health.liveness()
            elif self.path == "/readyz":
                ok, body = health.readiness()
            elif self.path == "/metrics":
                # This process's job histograms and attempt counters (the queue facts that
                # live in the database are served by every API replica's /metrics).
                self._send_bytes(200, health.worker.metrics.render(), CONTENT_TYPE_LATEST)
                return
            else:
                self._send(404, {"error": {"type": "NotFound", "message": self.path}})
                return
            self._send(200 if ok else 503, body)

        def _send(self, status: int, body: dict[str, object]) -> None:
            self._send_bytes(status, json.dumps(body).encode(), "application/json")

        def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would drown the log; stay quiet."""

    return Handler
