"""The one configuration object. Every value comes from a ``RAGSERVE_`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All of ragserve's configuration; built once by the CLI or app factory and passed down."""

    model_config = SettingsConfigDict(env_prefix="RAGSERVE_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset starts the embedded server."
    )
    data_dir: Path = Field(default=Path(".ragserve"), description="Embedded server and files.")
    db_pool_size: int = Field(default=10, ge=1, description="Connections per process.")

    embeddings: Literal["local", "openai"] = "local"
    embeddings_base_url: str | None = Field(
        default=None, description="OpenAI-compatible /v1 URL for embeddings; default: llm_base_url."
    )
    embeddings_model: str = "text-embedding-3-small"
    embeddings_api_key: str | None = None
    embeddings_batch_size: int = Field(default=32, ge=1)

    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL; unset = offline extractive answerer."
    )
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str | None = None
    llm_timeout_s: float = Field(default=120.0, gt=0)
    llm_temperature: float = 0.0
    llm_max_tokens: int = 512

    chunk_size: int = Field(default=800, ge=100, description="Characters per chunk.")
    chunk_overlap: int = Field(default=100, ge=0)

    worker_concurrency: int = Field(default=32, ge=1)
    job_timeout_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    heartbeat_timeout_s: float = Field(
        default=30.0, ge=1, description="A job whose worker is silent this long is retaken."
    )
    drain_s: float = Field(default=30.0, ge=0)
    cache_ttl_s: float = Field(default=3600.0, ge=0)
    retry_base_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles.")

    url: str = Field(default="http://127.0.0.1:8000", description="API URL used by CLI clients.")

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

    @property
    def embedded(self) -> bool:
        return self.database_url is None
