"""Two API processes with authentication on, sharing one database: ``serve`` (with the worker)
and ``api``. Tenants ``a`` and ``b`` each own a collection ``hr`` with different contents; ``a``
also owns ``a-only``. The processes run with an LLM key and a database password set, so that
their logs can be searched for them afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import MockLLM, running_service, service_env
from tenants.helpers import (
    A_HR,
    A_ONLY,
    B_HR,
    DB_PASSWORD,
    LLM_KEY,
    Cluster,
    create_keys,
    ingest,
    with_password,
)


@pytest.fixture(scope="module")
def cluster(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    url = with_password(new_database_url(), DB_PASSWORD)
    keys = asyncio.run(create_keys(url))
    env = service_env(
        url,
        auth="api_key",
        llm_base_url=mock_llm.base_url,
        llm_model="mock",
        llm_api_key=LLM_KEY,
    )
    logs: Path = tmp_path_factory.mktemp("tenants")
    with (
        running_service(env, logs, "serve") as (serve_url, serve),
        running_service(env, logs, "api") as (api_url, api),
    ):
        cluster = Cluster([serve_url, api_url], [serve, api], env, keys)
        with cluster.client("a") as a, cluster.client("b") as b:
            mock_llm.configure(ttft=0.02, tps=500, error_rate=0.0)
            ingest(a, "hr", "handbook.md", A_HR)
            ingest(b, "hr", "handbook.md", B_HR)
            only = ingest(a, "a-only", "wifi.md", A_ONLY)
            cluster.seeded = {
                "a_job": only["job_id"],
                "a_document": only["result"]["documents"][0]["document_id"],
            }
        yield cluster
