"""``/v1/apps``: the served Runnables, and jobs of them (docs/APPS.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ragserve.api.deps import Jobs, State
from ragserve.api.schemas import UNAVAILABLE, Accepted, AppList, Responses, error_doc
from ragserve.api.submissions import ACCEPTED_DOCS, IdempotencyKey, accepted
from ragserve.jobs.models import AppJobRequest

router = APIRouter(prefix="/v1", tags=["apps"], responses={**UNAVAILABLE})

NO_SUCH_APP: Responses = {404: error_doc("No app of this name")}


@router.get("/apps", summary="The apps this service runs, with their JSON schemas")
async def list_apps(jobs: Jobs) -> AppList:
    return AppList.model_validate({"apps": jobs.apps()})


@router.post(
    "/apps/{name}/jobs",
    status_code=202,
    response_model=Accepted,
    responses={
        **ACCEPTED_DOCS,
        **NO_SUCH_APP,
        422: error_doc("The input fails the app's input schema (the field is named)"),
    },
    summary="Run an app on an input, as a job",
)
async def submit_app_job(
    name: str,
    body: AppJobRequest,
    jobs: Jobs,
    state: State,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return accepted(await jobs.submit_app(name, body, idempotency_key), state)
