"""uvicorn for the app: a stop signal drains the app before uvicorn stops."""

from __future__ import annotations

import math
from types import FrameType

import uvicorn
from fastapi import FastAPI

from ragserve.api.app import begin_drain, create_app
from ragserve.settings import Settings


class DrainingServer(uvicorn.Server):
    """uvicorn, but a stop signal first marks the app draining, and a drained process exits
    with status 0 instead of re-raising the signal (which would skip ``atexit`` and leave the
    embedded PostgreSQL running after its last user)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        begin_drain(self._app)
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def create_server(settings: Settings, *, host: str, port: int, run_worker: bool) -> DrainingServer:
    app = create_app(settings, run_worker=run_worker)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # Requests in flight get RAGSERVE_DRAIN_S; open event streams end by themselves after
        # RAGSERVE_SSE_DRAIN_S (see begin_drain); this cut-off only catches what is left.
        timeout_graceful_shutdown=math.ceil(max(1.0, settings.drain_s, settings.sse_drain_s + 1)),
    )
    return DrainingServer(config, app)
