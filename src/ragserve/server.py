"""Running the processes: uvicorn for the API (optionally with a worker), or a bare worker.

SIGTERM (and Ctrl-C) start a drain: ``/readyz`` turns 503 at once, the worker stops taking
jobs, running ones get ``RAGSERVE_DRAIN_S`` to finish, the rest go back to the queue; open
event streams end after ``RAGSERVE_SSE_DRAIN_S`` (their clients resume elsewhere).

A bare worker never imports the HTTP side (FastAPI, uvicorn, ``ragserve.api``), so it cannot
come to depend on it by accident (``tests/jobs/test_worker_imports.py``); it also saves ~175
modules, ~0.4 s and ~8 MB at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from ragserve.jobs.health import HealthServer, WorkerHealth
from ragserve.kb.readiness import EmbedderCheck
from ragserve.services import build_worker, open_services
from ragserve.settings import Settings

if TYPE_CHECKING:
    import uvicorn


def build_server(settings: Settings, *, host: str, port: int, run_worker: bool) -> uvicorn.Server:
    """uvicorn serving the API on ``host:port``; with ``run_worker`` a worker runs inside."""
    # Imported here, not at the top, so that ``run_worker`` never loads FastAPI and uvicorn.
    from ragserve.api.serving import create_server

    return create_server(settings, host=host, port=port, run_worker=run_worker)


async def run_server(settings: Settings, *, host: str, port: int, run_worker: bool) -> None:
    server = build_server(settings, host=host, port=port, run_worker=run_worker)
    await server.serve()
    if server.started is False and not server.should_exit:
        raise SystemExit(1)


async def run_worker(
    settings: Settings, *, health_port: int | None = None, health_host: str = "0.0.0.0"
) -> None:
    """A worker until SIGTERM; with ``health_port``, ``/healthz`` and ``/readyz`` on it."""
    async with open_services(settings) as services:
        worker = build_worker(services)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.drain)
        if health_port is None:
            await worker.run()
            return
        health = WorkerHealth(worker, services.db, EmbedderCheck(services.embedder), settings)
        server = HealthServer(health, health_host, health_port)
        server.start()
        watch = asyncio.create_task(health.watch(), name="ragserve-health")
        try:
            await worker.run()
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            server.stop()
