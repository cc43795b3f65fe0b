"""``/v1/jobs`` and ``/v1/ask``: submit questions, read, stream, cancel and retry jobs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ragserve.api.auth import Caller
from ragserve.api.deps import Jobs, Ops, State
from ragserve.api.schemas import (
    LOCATION_HEADER,
    UNAVAILABLE,
    Accepted,
    JobList,
    JobListItem,
    JobTimeline,
    Responses,
    error_doc,
)
from ragserve.api.sse import KEEPALIVE_S, job_event_stream
from ragserve.api.submissions import ACCEPTED_DOCS, IdempotencyKey, accepted
from ragserve.errors import InvalidInput, NotFound
from ragserve.jobs.models import AnswerRequest, AskRequest, Job, JobKind, JobStatus
from ragserve.jobs.operations import JobListing
from ragserve.jobs.service import Submission
from ragserve.names import COLLECTION_NAME, is_uuid

router = APIRouter(prefix="/v1", tags=["jobs"], responses={**UNAVAILABLE})

NO_SUCH_JOB: Responses = {404: error_doc("No job with this id")}


@router.post(
    "/jobs",
    status_code=202,
    response_model=Accepted,
    responses={**ACCEPTED_DOCS},
    summary="Submit a question as a job",
)
async def submit_job(
    body: AnswerRequest,
    jobs: Jobs,
    state: State,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    submission = await jobs.submit_answer(body, idempotency_key, tenant=caller.tenant)
    return accepted(submission, state)


@router.post(
    "/ask",
    response_model=Job,
    responses={
        200: {"description": "The job finished within wait_s"},
        202: {
            "model": Accepted,
            "headers": LOCATION_HEADER,
            "description": "Still running after wait_s: follow it as after POST /v1/jobs",
        },
        409: ACCEPTED_DOCS[409],
        429: ACCEPTED_DOCS[429],
    },
    summary="Submit a question and wait up to wait_s for the answer",
)
async def ask(
    body: AskRequest,
    jobs: Jobs,
    state: State,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> Job | JSONResponse:
    request = AnswerRequest(**body.model_dump(exclude={"wait_s"}))
    submission = await jobs.submit_answer(request, idempotency_key, tenant=caller.tenant)
    job = await jobs.wait(submission.job.job_id, body.wait_s, tenant=caller.tenant)
    if job.status.terminal:
        return job
    return accepted(waited(submission, job, body.wait_s), state)


def waited(submission: Submission, job: Job, waited_s: float) -> Submission:
    """``submission`` as it stands ``waited_s`` later: its estimate counts down, and is 0
    once the job runs."""
    estimate = submission.estimated_start_s
    if job.status != JobStatus.queued:
        estimate = 0.0
    elif estimate is not None:
        estimate = max(0.0, estimate - waited_s)
    return replace(submission, job=job, estimated_start_s=estimate)


@router.get("/jobs", summary="List jobs, newest first (filters, and pages with ?before=)")
async def list_jobs(
    ops: Ops,
    caller: Caller,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    kind: JobKind | None = None,
    collection: Annotated[str | None, Query(pattern=COLLECTION_NAME.pattern)] = None,
    before: Annotated[
        str | None, Query(description="A job id: list the jobs older than it (the next page).")
    ] = None,
) -> JobList:
    if before is not None and not is_uuid(before):
        raise InvalidInput("before must be a job id (a UUID)")
    listed = await ops.jobs_page(
        limit=limit,
        status=status,
        kind=kind,
        collection=collection,
        before=before,
        tenant=caller.scope,
    )
    return JobList(jobs=[list_item(entry) for entry in listed])


def list_item(entry: JobListing) -> JobListItem:
    job = entry.job
    return JobListItem(
        **job.model_dump(),
        worker_id=entry.worker_id,
        worker_host=entry.worker_host,
        worker_pid=entry.worker_pid,
        queue_wait_s=seconds_between(job.created_at, job.started_at),
        duration_s=seconds_between(job.started_at, job.finished_at),
    )


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


@router.get(
    "/jobs/{job_id}/timeline",
    responses={**NO_SUCH_JOB},
    summary="A job's events (tokens summed up per attempt) and attempts, to read at once",
)
async def job_timeline(job_id: str, ops: Ops, caller: Caller) -> JobTimeline:
    timeline = await ops.timeline(job_id, tenant=caller.scope)
    if timeline is None:
        raise NotFound(f"job {job_id!r} not found")
    return JobTimeline.model_validate(
        {
            "job": timeline.job,
            "events": timeline.events,
            "tokens": timeline.tokens,
            "attempts": timeline.attempts,
        }
    )


@router.get("/jobs/{job_id}", responses={**NO_SUCH_JOB}, summary="Read one job")
async def get_job(job_id: str, jobs: Jobs, caller: Caller) -> Job:
    return await jobs.get(job_id, tenant=caller.scope)


@router.post(
    "/jobs/{job_id}/cancel", responses={**NO_SUCH_JOB}, summary="Cancel a queued or running job"
)
async def cancel_job(job_id: str, jobs: Jobs, caller: Caller) -> Job:
    return await jobs.cancel(job_id, tenant=caller.scope)


@router.post(
    "/jobs/{job_id}/retry",
    status_code=202,
    responses={**NO_SUCH_JOB, 409: error_doc("The job is not failed or cancelled")},
    summary="Run a failed or cancelled job again",
)
async def retry_job(job_id: str, jobs: Jobs, caller: Caller) -> Job:
    return await jobs.retry(job_id, tenant=caller.scope)


@router.get(
    "/jobs/{job_id}/events",
    summary="Server-Sent Events of a job (status, sources, token, done, error)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "The stored events from Last-Event-ID on, then live ones",
        },
        **NO_SUCH_JOB,
    },
)
async def job_events(
    job_id: str,
    jobs: Jobs,
    state: State,
    caller: Caller,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    after = 0
    if last_event_id:
        if not last_event_id.strip().isdigit():
            await jobs.get(job_id, tenant=caller.scope)  # a 404 comes first
            raise InvalidInput("Last-Event-ID must be a non-negative integer")
        after = int(last_event_id)
    # Opened here, so that a 404 comes before the stream starts: the job's notifications
    # followed, then the job and its first events read with one connection.
    events = await jobs.open_events(job_id, after, idle_s=KEEPALIVE_S, tenant=caller.scope)
    return StreamingResponse(
        job_event_stream(events, job_id, state.streams_closing),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
