"""Response bodies of the HTTP API (request bodies and ``Job`` live in ``ragserve.jobs.models``).

Field names are the contract (ARCHITECTURE.md); ``/openapi.json`` is generated from these.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragserve.jobs.models import Job, JobStatus, RetrievalQuery


class ErrorDetail(BaseModel):
    type: str = Field(description="The error's kind, e.g. NotFound, Conflict, InvalidInput.")
    message: str


class ErrorBody(BaseModel):
    """Every error answer (4xx, 5xx) has this body; no stack trace ever leaves."""

    error: ErrorDetail


Responses = dict[int | str, dict[str, Any]]
"""A route's ``responses=``: extra answers to document in the OpenAPI schema."""


def error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


UNAVAILABLE: Responses = {503: error_doc("PostgreSQL is unreachable; retry later")}
LOCATION_HEADER: dict[str, Any] = {
    "Location": {"description": "The job's URL", "schema": {"type": "string"}}
}


class Accepted(BaseModel):
    """``202 Accepted``: the job that will hold the answer (also sent as ``Location``)."""

    job_id: str
    status: JobStatus
    status_url: str
    events_url: str
    cached: bool = Field(description="The answer came from the cache: the job is done already.")
    coalesced: bool = Field(
        description="An identical question was in flight: this is its job, computed once."
    )
    estimated_start_s: float | None = Field(
        description="Seconds until a worker is expected to start the job (0: it has started);"
        " null while unknown (no job of its kind has finished lately). See docs/API.md."
    )


class JobListItem(Job):
    """A job in a list: the job, plus who ran its latest attempt and how long it took."""

    worker_id: str | None = Field(
        default=None, description="The worker process of the latest attempt; null if never run."
    )
    worker_host: str | None = Field(
        default=None, description="That worker's host, while the worker is still registered."
    )
    worker_pid: int | None = None
    queue_wait_s: float | None = Field(
        default=None, description="From submission to the first start; null while queued."
    )
    duration_s: float | None = Field(
        default=None, description="From the first start to the end; null until finished."
    )


class JobList(BaseModel):
    jobs: list[JobListItem] = Field(
        description="Newest first. The next (older) page: ?before= the last one's job_id."
    )


class CollectionSummary(BaseModel):
    name: str
    tenant: str = Field(default="default", description="The tenant that owns the collection.")
    embedder: str = Field(description="The embedding model that filled the collection.")
    embedding_dim: int
    generation: int = Field(description="Bumped by every change to the collection's documents.")
    created_at: datetime
    updated_at: datetime
    documents: int
    chunks: int


class CollectionList(BaseModel):
    collections: list[CollectionSummary]


class DocumentSummary(BaseModel):
    document_id: str
    source: str
    content_hash: str
    metadata: dict[str, Any]
    chunks: int
    created_at: datetime
    updated_at: datetime


class DocumentList(BaseModel):
    collection: str
    documents: list[DocumentSummary]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessChecks(BaseModel):
    """Each check; the process is ready when all pass and it is not draining."""

    model_config = ConfigDict(populate_by_name=True)

    draining: bool
    database: bool = Field(description="A pooled connection answers.")
    schema_current: bool = Field(alias="schema", description="Every migration is applied.")
    models: bool = Field(description="The embedding model is loaded and has embedded a text.")
    listener: bool = Field(description="The LISTEN connection that wakes event streams is up.")
    worker: bool | None = Field(
        default=None, description="The in-process worker runs (only present when there is one)."
    )

    @property
    def ready(self) -> bool:
        passed = [self.database, self.schema_current, self.models, self.listener]
        return all(passed) and self.worker is not False and not self.draining


class Readiness(BaseModel):
    ready: bool
    checks: ReadinessChecks
    circuits: dict[str, dict[str, object]] = Field(
        default_factory=dict,
        description="Circuit breaker of each model endpoint (informative: not a readiness check).",
    )


class UsageDay(BaseModel):
    """One tenant's jobs and tokens of one UTC day."""

    tenant: str
    day: date
    jobs: int = Field(description="Jobs that succeeded (cached answers are free: not counted).")
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int


class UsageList(BaseModel):
    usage: list[UsageDay]


class AppSummary(BaseModel):
    name: str
    queue: str = Field(description="The queue its jobs wait in (worker --queue serves it).")
    input_schema: dict[str, Any] = Field(
        description="JSON schema of the input; {} when the Runnable cannot describe it."
    )
    output_schema: dict[str, Any] = Field(
        description="JSON schema of the output (before serialization); {} when unknown."
    )


class AppList(BaseModel):
    apps: list[AppSummary]


class TimelineEvent(BaseModel):
    """One stored event of a job (the same as its SSE event ``seq``), with when it happened."""

    seq: int
    attempt: int
    type: str
    data: dict[str, Any]
    created_at: datetime


class TokenSummary(BaseModel):
    """The ``token`` events of one attempt, summed up (an answer has hundreds)."""

    attempt: int
    tokens: int
    first_at: datetime
    last_at: datetime


class AttemptRecord(BaseModel):
    attempt: int
    version: str
    worker_id: str
    worker_host: str | None = Field(description="Null once the worker is no longer registered.")
    worker_pid: int | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None = Field(
        description="succeeded, failed, retried or handed_back; null while running, and for "
        "attempts cancelled or lost with their worker."
    )


class JobTimeline(BaseModel):
    job: Job
    events: list[TimelineEvent] = Field(description="Every event but tokens, in order.")
    tokens: list[TokenSummary]
    attempts: list[AttemptRecord]


class QueueState(BaseModel):
    name: str
    depth: int = Field(description="Entries waiting (retries in backoff included).")
    running: int
    oldest_s: float = Field(description="Age of the oldest due entry still waiting; 0 if none.")


class RunningJob(BaseModel):
    job_id: str
    kind: str
    app: str | None = Field(default=None, description="Its app ('rag' for answers); null: ingest.")
    collection: str
    query: str | None
    started_at: datetime = Field(description="When the current attempt started.")


class WorkerState(BaseModel):
    id: str
    host: str
    pid: int
    version: str
    queues: list[str]
    running: int = Field(description="Jobs running, as of the worker's last heartbeat.")
    started_at: datetime
    heartbeat_at: datetime
    jobs: list[RunningJob] = Field(description="The running jobs whose attempt it holds.")


class OpsOverview(BaseModel):
    read_at: datetime = Field(description="The database's clock when this was read.")
    queues: list[QueueState]
    statuses: dict[JobStatus, int] = Field(description="Jobs in each status (all of them).")
    workers: list[WorkerState] = Field(description="Live worker processes.")
    dead_letters: list[Job] = Field(description="The newest failed jobs, newest first.")


class ThroughputBucket(BaseModel):
    minute: datetime
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    duration_p50_s: float | None = Field(description="Median run time of the succeeded jobs.")
    duration_p95_s: float | None
    queue_wait_avg_s: float | None = Field(description="Mean queue wait of the finished jobs.")


class Throughput(BaseModel):
    minutes: int
    buckets: list[ThroughputBucket] = Field(description="One per minute, oldest first.")


class SourceLocation(BaseModel):
    """Where a passage comes from: PDF page (1-based), heading path (outermost first)."""

    model_config = ConfigDict(extra="allow")  # table and row, when the passage is from a table

    page: int | None = None
    section: list[str] | None = None


class Source(BaseModel):
    """One retrieved passage: an entry of a job's ``result.sources`` or of a search."""

    document_id: str
    source: str
    chunk_id: str
    score: float
    text: str
    metadata: dict[str, Any]
    location: SourceLocation


class SearchRequest(RetrievalQuery):
    """Body of ``POST /v1/collections/{name}/search``: retrieval alone, no answer."""


class SearchResults(BaseModel):
    """The passages, best first, in the shape of a job's ``result.sources``."""

    results: list[Source]
