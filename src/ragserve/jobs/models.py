"""The job model: what a client submits and what it reads back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragserve.names import COLLECTION_NAME


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


JobKind = Literal["answer", "ingest", "app"]


def storable(value: Any) -> Any:
    """``value`` unchanged if PostgreSQL can store every string in it, else ``ValueError``.

    PostgreSQL text and jsonb hold no NUL character, and UTF-8 has no lone surrogates (which
    JSON's ``\\udXXX`` escapes can produce): either would fail the insert as a server error.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    elif isinstance(value, list):
        for item in value:
            storable(item)
    return value


class RetrievalQuery(BaseModel):
    """A question and what narrows its passages: the part of an answer request that retrieval
    alone (``POST /v1/collections/{name}/search``) takes too."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=8000)
    document_scope: list[str] | None = Field(default=None, max_length=1000)
    filters: dict[str, Any] | None = None
    top_k: int = Field(default=4, ge=1, le=100)

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must contain text")
        return value

    _storable = field_validator("query", "document_scope", "filters")(storable)


class AnswerRequest(RetrievalQuery):
    """Body of ``POST /v1/jobs``."""

    collection: str = Field(default="default", pattern=COLLECTION_NAME.pattern)


class AnswerResult(BaseModel):
    """Result of an answer job (and output of the built-in ``rag`` app)."""

    answer: str
    sources: list[dict[str, Any]]


class AppJobRequest(BaseModel):
    """Body of ``POST /v1/apps/{name}/jobs``."""

    model_config = ConfigDict(extra="forbid")

    input: Any = Field(description="The Runnable's input; checked against its input schema.")
    config: dict[str, Any] | None = Field(
        default=None,
        description="RunnableConfig keys: tags, metadata, run_name, configurable,"
        " recursion_limit, max_concurrency.",
    )

    _storable = field_validator("input", "config")(storable)


class AskRequest(AnswerRequest):
    """Body of ``POST /v1/ask``: an answer request plus how long to wait for it."""

    wait_s: float = Field(default=30.0, ge=0, le=600)


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    source: str = Field(min_length=1, max_length=1000)
    metadata: dict[str, Any] = Field(default_factory=dict)

    _storable = field_validator("text", "source", "metadata")(storable)


class IngestRequest(BaseModel):
    """JSON body of ``POST /v1/collections/{name}/documents``."""

    model_config = ConfigDict(extra="forbid")

    documents: list[TextDocument] = Field(min_length=1, max_length=10_000)


class JobError(BaseModel):
    type: str
    message: str


class Job(BaseModel):
    """A job as the API shows it."""

    job_id: str
    tenant: str = Field(default="default", description="The tenant the job belongs to.")
    kind: JobKind
    status: JobStatus
    query: str | None
    collection: str
    attempts: int
    cached: bool = False
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: JobError | None
    version: str | None = Field(
        default=None,
        description="Version (release+pipeline hash) that ran the latest attempt; null if none.",
    )
    app: str | None = Field(
        default=None,
        description="The app that runs the job ('rag' for answers); null for ingest jobs.",
    )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(
            job_id=str(row["id"]),
            tenant=row["tenant"],
            kind=row["kind"],
            status=row["status"],
            query=row["query"],
            collection=row["collection"],
            attempts=row["attempts"],
            cached=row["cached"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            result=row["result"],
            error=row["error"],
            version=row.get("version"),
            app=row.get("app"),
        )


class JobEvent(BaseModel):
    """One stored event; ``seq`` is its SSE id."""

    seq: int
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """The last event of a job: its result, its failure, or its cancellation."""
        return self.type in ("done", "error") or (
            self.type == "status" and self.data.get("status") == JobStatus.cancelled
        )
