"""The ``202 Accepted`` answer to a submission (questions and uploads alike)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header
from fastapi.responses import JSONResponse

from ragserve.api.schemas import LOCATION_HEADER, Accepted, Responses, error_doc
from ragserve.api.state import AppState
from ragserve.jobs.service import Submission

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]

ACCEPTED_DOCS: Responses = {
    202: {"headers": LOCATION_HEADER},
    409: error_doc("The Idempotency-Key was used before with a different request"),
    429: {
        **error_doc(
            "Over a limit: the tenant's RAGSERVE_MAX_QUEUED_PER_TENANT (TenantQueueFull), the"
            " estimated wait over RAGSERVE_MAX_QUEUE_WAIT_S (QueueFull), or the tenant's"
            " RAGSERVE_DAILY_TOKEN_BUDGET used up (BudgetExhausted)"
        ),
        "headers": {
            "Retry-After": {
                "description": "Seconds until it may pass",
                "schema": {"type": "integer"},
            }
        },
    },
}


def count_submission(submission: Submission, state: AppState) -> None:
    """Count the submission's outcome (created, cached, coalesced, replayed) in the metrics."""
    job = submission.job
    outcome = (
        "cached"
        if job.cached and submission.created
        else "coalesced"
        if submission.coalesced
        else "created"
        if submission.created
        else "replayed"
    )
    state.metrics.submitted.labels(job.kind, outcome).inc()


def accepted(submission: Submission, state: AppState) -> JSONResponse:
    """``202`` with the job's URLs in the body and in ``Location``; counts the outcome."""
    count_submission(submission, state)
    job = submission.job
    status_url = f"/v1/jobs/{job.job_id}"
    body = Accepted(
        job_id=job.job_id,
        status=job.status,
        status_url=status_url,
        events_url=f"{status_url}/events",
        cached=job.cached,
        coalesced=submission.coalesced,
        estimated_start_s=submission.estimated_start_s,
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=202, headers={"Location": status_url}
    )
