"""The app factory: builds the process's objects in the lifespan and mounts the routers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ragserve import __version__
from ragserve.api.auth import protected
from ragserve.api.errors import install_error_handlers
from ragserve.api.metrics import HttpMetricsMiddleware, Metrics
from ragserve.api.ratelimit import RateLimiter
from ragserve.api.routers import apps, collections, health, jobs, openai, ops, usage
from ragserve.api.routers.ui import mount_console
from ragserve.api.state import AppState
from ragserve.db.api_keys import ApiKeyStore, KeyVerifier
from ragserve.jobs.notify import NotificationHub
from ragserve.jobs.service import EVENTS_CHANNEL
from ragserve.kb.readiness import EmbedderCheck
from ragserve.services import build_job_service, build_worker, open_services
from ragserve.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, run_worker: bool = False) -> FastAPI:
    """The ASGI app. With ``run_worker`` it also runs a worker in the same event loop."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            hub = NotificationHub(services.db, [EVENTS_CHANNEL])
            await hub.start()
            state = AppState(
                services=services,
                jobs=build_job_service(services, hub),
                hub=hub,
                metrics=metrics,
                models=EmbedderCheck(services.embedder),
                keys=(
                    KeyVerifier(ApiKeyStore(services.db), settings.auth_cache_s)
                    if settings.auth_enabled
                    else None
                ),
                rate_limiter=(
                    RateLimiter(settings.rate_limit_rps) if settings.rate_limit_rps else None
                ),
            )
            if run_worker:
                state.worker = build_worker(services)
                state.worker_task = asyncio.create_task(state.worker.run(), name="worker")
            app.state.ragserve = state
            log.info("api ready", extra={"event": "api.ready", "worker": run_worker})
            try:
                yield
            finally:
                begin_drain(app)
                if state.worker_task is not None:
                    await state.worker_task
                await hub.stop()

    app = FastAPI(
        title="ragserve",
        version=__version__,
        summary="Asynchronous question answering over your own documents.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    # Every router needs an API key (when RAGSERVE_AUTH=api_key) but the health one, and the
    # console's static files (they hold no data; the console asks for a key itself).
    app.include_router(jobs.router, **protected())
    app.include_router(collections.router, **protected())
    app.include_router(health.router)
    app.include_router(usage.router, **protected())
    app.include_router(apps.router, **protected())
    app.include_router(ops.router, **protected())
    app.include_router(openai.router, **protected())
    mount_console(app)
    return app


def begin_drain(app: FastAPI) -> None:
    """SIGTERM: report not-ready at once, let the worker (if any) start draining, and end
    open event streams after ``RAGSERVE_SSE_DRAIN_S`` so that their clients resume elsewhere
    (the load balancer has stopped sending new ones here by then)."""
    state: AppState | None = getattr(app.state, "ragserve", None)
    if state is None or state.draining:
        return
    state.draining = True
    if state.worker is not None:
        state.worker.drain()
    grace_s = state.services.settings.sse_drain_s
    asyncio.get_running_loop().call_later(grace_s, state.streams_closing.set)
