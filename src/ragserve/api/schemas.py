"""Response bodies of the HTTP API (request bodies and ``Job`` live in ``ragserve.jobs.models``).

Field names are the contract (ARCHITECTURE.md); ``/openapi.json`` is generated from these.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragserve.jobs.models import Job, JobStatus


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


class JobList(BaseModel):
    jobs: list[Job]


class CollectionSummary(BaseModel):
    name: str
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
