"""``/v1/apps``: the served Runnables, and jobs of them (docs/APPS.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ragserve.api.deps import Jobs, State, Tenant
from ragserve.api.schemas import UNAVAILABLE, Accepted, AppList, Responses, error_doc
from ragserve.api.submissions import ACCEPTED_DOCS, IdempotencyKey, accepted
from ragserve.jobs.apps import InputRejected
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
    responses={**ACCEPTED_DOCS, **NO_SUCH_APP},
    summary="Run an app on an input, as a job",
)
async def submit_app_job(
    name: str,
    body: AppJobRequest,
    jobs: Jobs,
    state: State,
    tenant: Tenant,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """An ``input`` that fails the app's input schema is a 422 of the usual shape (FastAPI's
    ``detail`` list, ``loc`` naming the field, e.g. ``["body", "input", "name"]``), before any
    job exists."""
    try:
        submission = await jobs.submit_app(name, body, idempotency_key, tenant)
    except InputRejected as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors]
        raise RequestValidationError(errors, body=None) from None
    return accepted(submission, state)
