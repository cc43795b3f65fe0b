"""Liveness, readiness and metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from ragserve.api.deps import State
from ragserve.api.schemas import Health, Readiness, ReadinessChecks
from ragserve.api.state import AppState
from ragserve.db.migrate import schema_is_current

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


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
    return Readiness(ready=checks.ready, checks=checks)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: State) -> Response:
    for status, count in (await state.jobs.count_by_status()).items():
        state.metrics.jobs.labels(status.value).set(count)
    if state.worker is not None:
        state.metrics.worker_running.set(len(state.worker.running))
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
