"""The one configuration object. Every value comes from a ``RAGSERVE_`` environment variable.

Build it with :func:`load_settings`: a mistake in the environment then becomes one
:class:`~ragserve.errors.ConfigurationError` whose message names the variable, instead of
pydantic's multi-line report.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragserve.errors import ConfigurationError

ENV_PREFIX = "RAGSERVE_"


class Settings(BaseSettings):
    """All of ragserve's configuration; built once by the CLI or app factory and passed down."""

    # ``env_ignore_empty``: ``RAGSERVE_LLM_BASE_URL=`` (a blank line in a compose file or a
    # shell's ``export X=``) means "unset", not "the empty string".
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL; unset starts the embedded server. Secret: it may hold a"
        " password (shown only through ragserve.logs.redact_url).",
    )
    data_dir: Path = Field(default=Path(".ragserve"), description="Embedded server and files.")
    db_pool_size: int = Field(default=10, ge=1, description="Connections per process.")
    api_workers: int = Field(
        default=1, ge=1, description="ragserve api: HTTP processes on one address (--workers)."
    )

    embeddings: Literal["local", "openai"] = "local"
    embeddings_base_url: str | None = Field(
        default=None, description="OpenAI-compatible /v1 URL for embeddings; default: llm_base_url."
    )
    embeddings_model: str = "text-embedding-3-small"
    embeddings_api_key: SecretStr | None = Field(
        default=None, description="Key for the embeddings endpoint; default: llm_api_key."
    )
    embeddings_batch_size: int = Field(default=32, ge=1)
    embeddings_local_workers: int | None = Field(
        default=None,
        ge=1,
        description="Threads embedding documents side by side with the local model, one core"
        " each; default: usable CPUs.",
    )

    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL; unset = offline extractive answerer."
    )
    llm_model: str = "gpt-4o-mini"
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=120.0, gt=0)
    llm_temperature: float = Field(default=0.0, ge=0, le=2)
    llm_max_tokens: int = Field(default=512, ge=1)

    chunk_size: int = Field(default=800, ge=100, description="Characters per chunk.")
    chunk_overlap: int = Field(default=100, ge=0, description="Must be below chunk_size.")

    worker_concurrency: int = Field(default=32, ge=1)
    job_timeout_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    heartbeat_timeout_s: float = Field(
        default=6.0,
        ge=1,
        description="A job whose worker is silent this long is retaken (heartbeats every half).",
    )
    drain_s: float = Field(default=30.0, ge=0)
    cache_ttl_s: float = Field(default=3600.0, ge=0)
    retry_base_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles.")

    url: str = Field(default="http://127.0.0.1:8000", description="API URL used by CLI clients.")
    api_key: SecretStr | None = Field(
        default=None, description="API key the CLI clients send (RAGSERVE_AUTH=api_key)."
    )

    db_timeout_s: float = Field(
        default=3.0, gt=0, description="Longest wait for a database connection; then 503."
    )
    sse_drain_s: float = Field(
        default=10.0,
        ge=0,
        description="After SIGTERM, open event streams end this late; clients resume elsewhere.",
    )
    health_db_lost_s: float = Field(
        default=60.0,
        gt=0,
        description="A worker whose database has been unreachable this long reports unhealthy.",
    )
    health_loop_stall_s: float = Field(
        default=10.0,
        gt=0,
        description="A worker whose event loop has not run for this long reports unhealthy.",
    )
    worker_presence_s: float = Field(
        default=5.0,
        gt=0,
        description="How often a worker records that it is alive; gone after 3 missed.",
    )
    retention_days: float = Field(
        default=30.0, gt=0, description="Finished jobs, their events and queue logs are kept."
    )
    retention_uploads_days: float = Field(
        default=7.0, gt=0, description="Uploaded bytes of failed or cancelled ingests are kept."
    )
    retention_interval_s: float = Field(
        default=900.0, ge=0, description="How often workers prune (one at a time); 0 = never."
    )
    canary_percent: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="Share of new jobs sent to canary workers while one is alive (API side).",
    )
    worker_track: Literal["stable", "canary"] = Field(
        default="stable",
        description="Which queues this worker serves: the stable ones or the canary ones.",
    )
    retrieval: Literal["vector", "hybrid"] = Field(
        default="hybrid", description="vector, or vector + full-text fused (docs/RETRIEVAL.md)."
    )
    rerank_base_url: str | None = Field(
        default=None, description="Base URL of a /rerank endpoint; unset = no reranking."
    )
    rerank_model: str | None = None
    rerank_api_key: SecretStr | None = None
    rerank_timeout_s: float = Field(default=2.0, gt=0)
    rerank_candidates: int = Field(
        default=4, ge=1, description="Chunks sent to the reranker, as a multiple of top_k."
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive transient model failures that open a circuit."
    )
    breaker_open_s: float = Field(
        default=10.0, gt=0, description="First open period of a circuit before a probe call."
    )
    breaker_max_open_s: float = Field(
        default=120.0, gt=0, description="Longest open period (it doubles while probes fail)."
    )
    max_upload_mb: float = Field(
        default=50.0,
        gt=0,
        description="Largest request body of an upload, in MB; a larger one gets 413 unread.",
    )
    max_files_per_upload: int = Field(
        default=100, ge=1, description="Most files in one upload request; more get 413."
    )
    max_document_chars: int = Field(
        default=5_000_000,
        ge=1,
        description="Most characters of text in one document; a longer one fails on its own.",
    )
    max_document_pages: int = Field(
        default=2000, ge=1, description="Most pages of one PDF; a longer one fails on its own."
    )
    auth: Literal["off", "api_key"] | None = Field(
        default=None,
        description="api_key: every /v1 request needs a key; unset acts as off, on loopback only.",
    )
    auth_cache_s: float = Field(
        default=2.0,
        ge=0,
        description="Seconds a process trusts a verified key; a revocation takes this long.",
    )
    rate_limit_rps: float | None = Field(
        default=None,
        gt=0,
        description="Requests per second per API key (per client address with auth off), per"
        " API process; bursts of twice that pass. Beyond it 429. Unset: no limit.",
    )
    max_queued_per_tenant: int | None = Field(
        default=None,
        ge=1,
        description="Most queued+running jobs of one tenant; beyond it 429. Unset: no limit.",
    )
    max_queue_wait_s: float | None = Field(
        default=None,
        gt=0,
        description="A new job whose estimated wait exceeds this gets 429; unset = no limit.",
    )
    daily_token_budget: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per tenant per UTC day; new answer and app jobs then get 429.",
    )
    apps: str | None = Field(
        default=None,
        description="Apps served besides rag: NAME=module:attribute, ;-separated (docs/APPS.md).",
    )
    worker_queues: str | None = Field(
        default=None,
        description="Worker: the queues it serves, comma-separated; unset = every queue.",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        url = value.get_secret_value() if value is not None else None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (or be unset for the embedded server)")
        return value

    @field_validator("llm_base_url", "embeddings_base_url", "url", "rerank_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"RAGSERVE_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                f"RAGSERVE_CHUNK_SIZE ({self.chunk_size})"
            )
        if self.embeddings == "openai" and not (self.embeddings_base_url or self.llm_base_url):
            raise ValueError(
                "RAGSERVE_EMBEDDINGS=openai needs RAGSERVE_EMBEDDINGS_BASE_URL "
                "(or RAGSERVE_LLM_BASE_URL), e.g. https://api.openai.com/v1"
            )
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "api_key"

    def check_listener(self, host: str) -> None:
        """Refuse to serve the API on a non-loopback ``host`` without authentication, unless
        ``RAGSERVE_AUTH=off`` says so explicitly (``ConfigurationError``, one line)."""
        if self.auth is None and not is_loopback(host):
            raise ConfigurationError(
                f"refusing to listen on {host} without authentication: set RAGSERVE_AUTH=api_key"
                " (and create keys with `ragserve keys create`), or RAGSERVE_AUTH=off to serve"
                " without keys on purpose"
            )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name: it may resolve to anything
        return False


def load_settings() -> Settings:
    """Settings from the environment; a mistake raises :class:`ConfigurationError`.

    The error's message is one line naming the variable (``RAGSERVE_CHUNK_SIZE: ...``), fit to
    print as is; it never contains a secret's value.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None


def describe(error: ValidationError) -> str:
    """One line for all problems of a validation error, each led by its variable's name."""
    problems = []
    for problem in error.errors(include_url=False, include_input=False):
        message = str(problem["msg"]).removeprefix("Value error, ")
        location = problem["loc"]
        if location and isinstance(location[0], str):
            problems.append(f"{ENV_PREFIX}{location[0].upper()}: {message}")
        else:  # a check across fields: its message names the variables itself
            problems.append(message)
    return "; ".join(problems)
