"""Running the processes: uvicorn for the API (optionally with a worker), or a bare worker.

SIGTERM (and Ctrl-C) start a drain: ``/readyz`` turns 503 at once, the worker stops taking
jobs, running ones get ``RAGSERVE_DRAIN_S`` to finish, the rest go back to the queue.
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

import uvicorn

from ragserve.api.app import begin_drain, build_worker, create_app
from ragserve.services import open_services
from ragserve.settings import Settings


class _DrainingServer(uvicorn.Server):
    """uvicorn, but a stop signal first marks the app draining, and a drained process exits
    with status 0 instead of re-raising the signal (which would skip ``atexit`` and leave the
    embedded PostgreSQL running after its last user)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        begin_drain(self.config.app)  # type: ignore[arg-type]
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def build_server(settings: Settings, *, host: str, port: int, run_worker: bool) -> uvicorn.Server:
    app = create_app(settings, run_worker=run_worker)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # Open event streams must not hold a restart hostage for longer than the drain.
        timeout_graceful_shutdown=max(1, int(settings.drain_s)),
    )
    return _DrainingServer(config)


async def run_server(settings: Settings, *, host: str, port: int, run_worker: bool) -> None:
    server = build_server(settings, host=host, port=port, run_worker=run_worker)
    await server.serve()
    if server.started is False and not server.should_exit:
        raise SystemExit(1)


async def run_worker(settings: Settings) -> None:
    async with open_services(settings) as services:
        worker = build_worker(services)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.drain)
        await worker.run()
