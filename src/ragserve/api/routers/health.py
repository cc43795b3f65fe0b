"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ragserve.api.deps import State
from ragserve.api.schemas import Health, Readiness, ReadinessChecks
from ragserve.api.state import AppState
from ragserve.db.migrate import schema_is_current
from ragserve.jobs.monitoring import read_facts
from ragserve.jobs.worker import worker_slots
from ragserve.kb.breaker import breakers_of, describe_circuits

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

METRICS_DB_TIMEOUT_S = 3.0
"""A scrape (10 s timeout by default) gets the process's own metrics even if PostgreSQL hangs."""


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    summary="Ready for traffic: database, schema, models; not draining",
    response_model_exclude_none=True,
    responses={503: {"model": Readiness, "description": "Not ready (starting, draining, broken)"}},
)
async def readyz(state: State, response: Response) -> Readiness:
    readiness = await check_readiness(state)
    response.status_code = 200 if readiness.ready else 503
    return readiness


async def check_readiness(state: AppState) -> Readiness:
    database = schema = False
    try:
        async with state.services.db.connection() as conn:
            database = True
            schema = await schema_is_current(conn)
    except Exception as exc:  # whatever the reason, the process is not ready; log why
        log.warning("database not ready", extra={"event": "ready.database", "error": str(exc)})
    checks = ReadinessChecks(
        draining=state.draining,
        database=database,
        schema_current=schema,
        models=await state.models.ready(),
        listener=state.hub.healthy,
        worker=None if state.worker_task is None else not state.worker_task.done(),
    )
    breakers = breakers_of(state.services.answerer, state.services.embedder)
    return Readiness(ready=checks.ready, checks=checks, circuits=describe_circuits(breakers))


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: State) -> Response:
    """Facts of the database are read now, so every replica reports the same; if the
    database does not answer, those series are left out and the process's own still render."""
    facts = by_status = None
    try:
        async with asyncio.timeout(METRICS_DB_TIMEOUT_S):
            async with state.services.db.connection() as conn:
                facts = await read_facts(
                    conn, state.services.apps.queues(), worker_slots(state.services.settings)
                )
            by_status = {s.value: n for s, n in (await state.jobs.count_by_status()).items()}
    except Exception as exc:  # a scrape must not fail because the database is away
        log.warning(
            "metrics without database", extra={"event": "metrics.database", "error": str(exc)}
        )
    state.metrics.set_database_facts(facts, by_status)
    worker = state.worker
    if worker is not None:
        state.metrics.worker_running.set(len(worker.running))
    body = state.metrics.render(worker.metrics if worker is not None else None)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
