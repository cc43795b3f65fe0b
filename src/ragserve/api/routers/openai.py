"""The OpenAI-compatible front door: ``/v1/models`` and ``/v1/chat/completions``.

A model is a collection; a completion is an ordinary answer job (``JobService.submit_answer``:
visible in ``/v1/jobs``, cached, coalesced, ``Idempotency-Key`` honoured). Non-streamed, the
request waits for the job; streamed, the job's events become ``chat.completion.chunk`` lines as
the tokens arrive. Either way the job runs on whatever happens to this request.

With keys on, a model is one of the caller's collections (its key's tenant, or the tenant an
admin names in ``X-Ragserve-Tenant``): ``/v1/models`` lists those, and a completion is a job of
that tenant on its collection. Another tenant's collection is ``model_not_found``.

Every error of these routes is in OpenAI's shape with OpenAI's status codes (``OpenAIRoute``,
``api/openai_errors.py``). docs/OPENAI.md is the user's guide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from ragserve.answer_stream import StreamedAnswer
from ragserve.api.auth import Caller
from ragserve.api.deps import Jobs, Kb, State
from ragserve.api.errors import RETRY_AFTER_S
from ragserve.api.openai_errors import (
    OPENAI_ERRORS,
    OpenAIRoute,
    bad_request,
    error_doc,
    openai_error,
)
from ragserve.api.openai_history import question_of
from ragserve.api.openai_schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    RagserveExtension,
    RagserveOptions,
)
from ragserve.api.openai_wire import (
    DONE,
    ChunkWriter,
    answer_of,
    cited_sources_footer,
    completion,
    error_detail,
    estimate_usage,
    sources_of,
    sse_data,
)
from ragserve.api.sse import KEEPALIVE, KEEPALIVE_S, EventsUntil, StreamEnd
from ragserve.api.submissions import IdempotencyKey, count_submission
from ragserve.errors import DatabaseError
from ragserve.jobs.models import AnswerRequest, Job, JobStatus
from ragserve.jobs.service import JobService
from ragserve.kb.store import KnowledgeStore
from ragserve.names import COLLECTION_NAME

log = logging.getLogger(__name__)

JOB_ID_HEADER = "X-Ragserve-Job-Id"

router = APIRouter(
    prefix="/v1", tags=["openai"], route_class=OpenAIRoute, responses={**OPENAI_ERRORS}
)


def _model_not_found(model: str) -> JSONResponse:
    return openai_error(
        404,
        f"The model '{model}' does not exist: ragserve's models are its collections"
        " (GET /v1/models).",
        code="model_not_found",
        param="model",
    )


async def _model_card(kb: KnowledgeStore, model: str, tenant: str) -> ModelCard | None:
    if not COLLECTION_NAME.match(model):
        return None
    collections = await kb.list_collections(tenant=tenant)
    found = next((c for c in collections if c["name"] == model), None)
    if found is None:
        return None
    return ModelCard(id=found["name"], created=int(found["created_at"].timestamp()))


@router.get("/models", summary="OpenAI: list models (one per collection)")
async def list_models(kb: Kb, caller: Caller) -> ModelList:
    collections = await kb.list_collections(tenant=caller.tenant)
    return ModelList(
        data=[
            ModelCard(id=c["name"], created=int(c["created_at"].timestamp())) for c in collections
        ]
    )


@router.get("/models/{model_id}", response_model=ModelCard, summary="OpenAI: one model")
async def get_model(
    model_id: Annotated[str, Path(max_length=200)], kb: Kb, caller: Caller
) -> Response:
    card = await _model_card(kb, model_id, caller.tenant)
    if card is None:
        return _model_not_found(model_id)
    return JSONResponse(card.model_dump())


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "description": "The answer; with stream=true, Server-Sent Events of"
            " chat.completion.chunk objects, then data: [DONE]",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": "data: {...chat.completion.chunk...}\n\ndata: [DONE]\n\n",
                }
            },
            "headers": {JOB_ID_HEADER: {"description": "The job", "schema": {"type": "string"}}},
        },
        409: error_doc(
            "The Idempotency-Key was used with another request, or the job was cancelled"
        ),
        500: error_doc("The job failed (code job_failed); the body names it"),
        504: error_doc("The job did not finish in time (code job_timeout); it keeps running"),
    },
    summary="OpenAI: chat completion (a question to a collection, as a job)",
)
async def chat_completions(
    body: ChatCompletionRequest,
    jobs: Jobs,
    kb: Kb,
    state: State,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    question = question_of(body.messages)
    if question is None:
        raise bad_request("messages", "the last user message must have text: it is the question")
    tenant = caller.tenant
    if (
        not COLLECTION_NAME.match(body.model)
        or await kb.get_collection(body.model, tenant=tenant) is None
    ):
        return _model_not_found(body.model)
    options = body.ragserve or RagserveOptions()
    try:
        request = AnswerRequest(
            query=question,
            collection=body.model,
            top_k=options.top_k,
            document_scope=options.document_scope,
            filters=options.filters,
        )
    except ValidationError as exc:
        # The question comes from the messages; the other fields from the ragserve object.
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "query"
        param = "messages" if field == "query" else f"ragserve.{field}"
        raise bad_request(param, first["msg"]) from None
    submission = await jobs.submit_answer(request, idempotency_key, tenant=tenant)
    count_submission(submission, state)
    job = submission.job
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        writer = ChunkWriter(job, body.model, include_usage=include_usage)
        return StreamingResponse(
            _completion_stream(
                jobs, job, writer, question, options, state.streams_closing, tenant=tenant
            ),
            media_type="text/event-stream",
            headers={
                JOB_ID_HEADER: job.job_id,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
    settings = state.services.settings
    limit_s = settings.job_timeout_s * settings.max_attempts
    wait_s = min(limit_s, options.wait_s or limit_s)
    finished = await _wait_unless(
        jobs.wait(job.job_id, wait_s, tenant=tenant), state.streams_closing
    )
    if finished is None:
        return openai_error(
            503,
            f"this server is shutting down; job {job.job_id} continues: retry the request"
            f" (it finds the same job) or GET /v1/jobs/{job.job_id}",
            code="server_shutting_down",
            headers={JOB_ID_HEADER: job.job_id, "Retry-After": str(RETRY_AFTER_S)},
        )
    return _finished(finished, body.model, question, options, wait_s)


async def _wait_unless(waiting: Coroutine[Any, Any, Job], closing: asyncio.Event) -> Job | None:
    """The job ``waiting`` returns, or None if ``closing`` is set first (the process drains:
    the client should ask another replica, where the same question finds the same job)."""
    wait = asyncio.ensure_future(waiting)
    closed = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait({wait, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        if not wait.done():
            wait.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await wait
    return wait.result() if not wait.cancelled() else None


def _finished(
    job: Job, model: str, question: str, options: RagserveOptions, wait_s: float
) -> JSONResponse:
    headers = {JOB_ID_HEADER: job.job_id}
    fetch = f"GET /v1/jobs/{job.job_id}"
    if job.status == JobStatus.succeeded:
        body = completion(job, model, question, footer=options.sources_footer)
        return JSONResponse(body.model_dump(mode="json"), headers=headers)
    # A finished job's outcome will not change on a retry: tell the SDKs not to retry.
    final = {**headers, "x-should-retry": "false"}
    if job.status == JobStatus.failed:
        error = job.error
        why = f"{error.type}: {error.message}" if error else "unknown error"
        return openai_error(
            500, f"job {job.job_id} failed: {why} ({fetch})", code="job_failed", headers=final
        )
    if job.status == JobStatus.cancelled:
        return openai_error(
            409, f"job {job.job_id} was cancelled ({fetch})", code="job_cancelled", headers=final
        )
    return openai_error(
        504,
        f"job {job.job_id} did not finish within {wait_s:g} s; it keeps running: {fetch}"
        f" or GET /v1/jobs/{job.job_id}/events",
        code="job_timeout",
        headers=headers,
    )


async def _completion_stream(
    jobs: JobService,
    job: Job,
    writer: ChunkWriter,
    question: str,
    options: RagserveOptions,
    closing: asyncio.Event,
    *,
    tenant: str,
) -> AsyncIterator[str]:
    """The job's events as chunks, until its result, failure or cancellation; then
    ``[DONE]``. A client that goes away ends this generator, never the job."""
    yield writer.role()
    fetch = f"GET /v1/jobs/{job.job_id}"
    shown = StreamedAnswer()
    events = jobs.events(job.job_id, 0, idle_s=KEEPALIVE_S, tenant=tenant)
    try:
        async with EventsUntil(events, closing) as items:
            while True:
                event = await items.next()
                if isinstance(event, StreamEnd):
                    if closing.is_set():
                        message = f"this server is shutting down; the job continues: {fetch}"
                        yield _stream_error(message, "server_error", "server_shutting_down")
                        break
                    final = await jobs.get(
                        job.job_id, tenant=tenant
                    )  # events ended: the job ended before
                    result = final.result if final.status == JobStatus.succeeded else None
                    if result is None:
                        yield _stream_error(f"job {job.job_id} is {final.status}: {fetch}")
                        break
                    for line in _ending(writer, job, question, options, shown, result):
                        yield line
                    break
                if event is None:
                    yield KEEPALIVE
                elif event.type == "token":
                    attempt = int(event.data.get("attempt") or 0)
                    if text := shown.token(str(event.data.get("text") or ""), attempt):
                        yield writer.content(text)
                elif event.type == "done":
                    result = event.data.get("result") or {}
                    for line in _ending(writer, job, question, options, shown, result):
                        yield line
                    break
                elif event.type == "error":
                    why = f"{event.data.get('type')}: {event.data.get('message')}"
                    yield _stream_error(
                        f"job {job.job_id} failed: {why} ({fetch})", code="job_failed"
                    )
                    break
                elif event.type == "status" and event.data.get("status") == JobStatus.cancelled:
                    message = f"job {job.job_id} was cancelled ({fetch})"
                    yield _stream_error(message, "invalid_request_error", "job_cancelled")
                    break
    except DatabaseError as exc:
        log.warning(
            "completion stream ended: database unavailable",
            extra={"event": "sse.db_lost", "job_id": job.job_id, "error": str(exc)},
        )
        message = f"database unavailable; the job continues: {fetch}"
        yield _stream_error(message, "server_error", "database_error")
    yield DONE


def _ending(
    writer: ChunkWriter,
    job: Job,
    question: str,
    options: RagserveOptions,
    shown: StreamedAnswer,
    result: dict[str, Any],
) -> list[str]:
    """The rest of the answer, its sources footer, the finish chunk and the usage chunk."""
    answer = answer_of(result)
    sources = sources_of(result)
    rest = shown.finish(answer)
    if options.sources_footer:
        rest += cited_sources_footer(answer, sources)
    lines = [writer.content(rest)] if rest else []
    extension = RagserveExtension(
        job_id=job.job_id, sources=sources, cached=job.cached, question=question
    )
    lines.append(writer.finish(extension))
    if writer.include_usage:
        lines.append(writer.usage(estimate_usage(question, sources, answer)))
    return lines


def _stream_error(message: str, type_: str = "server_error", code: str | None = None) -> str:
    """An error in the stream: the SDKs raise it as an ``APIError``."""
    return sse_data(error_detail(message, type_, code))
