"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ragserve.api.deps import State
from ragserve.db.migrate import schema_is_current

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready for traffic: database, schema, models; not draining")
async def readyz(state: State) -> JSONResponse:
    checks = {
        "draining": state.draining,
        "database": False,
        "schema": False,
        "models": True,
        "listener": state.hub.healthy,
    }
    try:
        async with state.services.db.connection() as conn:
            checks["database"] = True
            checks["schema"] = await schema_is_current(conn)
    except Exception:
        pass
    if state.worker_task is not None:
        checks["worker"] = not state.worker_task.done()
    ready = all(v for k, v in checks.items() if k != "draining") and not state.draining
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: State) -> Response:
    counts = await state.jobs.jobs.count_by_status()
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        state.metrics.jobs.labels(status).set(counts.get(status, 0))
    if state.worker is not None:
        state.metrics.worker_running.set(len(state.worker.running))
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
