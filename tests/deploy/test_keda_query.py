"""The KEDA ScaledObject's PostgreSQL query, read out of the YAML and run against a live,
migrated database at several queue depths: it asks for one worker while jobs wait and none
runs (scale from zero; the expected-wait trigger does the rest), then a worker started late
drains the queue, and the query counts running jobs until they finish (busy workers stay)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from support import MockLLM, Proc, service_env

ROOT = Path(__file__).resolve().parents[2]
SCALED_OBJECT = ROOT / "deploy" / "k8s" / "keda-scaledobject.yaml"
COLLECTION = "handbook"
DOC = "The Aurora office opens at 8 am and closes at 6 pm on weekdays."


def keda_query() -> tuple[str, int]:
    """The postgresql trigger's query and targetQueryValue of the ScaledObject."""
    documents = list(yaml.safe_load_all(SCALED_OBJECT.read_text()))
    scaled = [d for d in documents if d["kind"] == "ScaledObject"]
    assert len(scaled) == 1
    triggers = [t for t in scaled[0]["spec"]["triggers"] if t["type"] == "postgresql"]
    assert len(triggers) == 1
    metadata = triggers[0]["metadata"]
    return metadata["query"], int(metadata["targetQueryValue"])


def depth(database_url: str, query: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def llm(mock_llm: MockLLM) -> Iterator[MockLLM]:
    yield mock_llm
    mock_llm.configure(ttft=0.05, tps=200, error_rate=0.0)


def test_keda_query_counts_queued_and_running_jobs(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
    start_worker: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    query, target = keda_query()
    assert target >= 1
    database_url = new_database_url()
    env = service_env(database_url, llm_base_url=llm.base_url, llm_model="mock")
    url, _api = start_service(env, command="api")  # migrates the database; no worker anywhere

    # Documents straight into the database (no queue), so that answers have something to cite.
    (tmp_path / "aurora.md").write_text(DOC)
    ingest = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragserve",
            "ingest",
            str(tmp_path / "aurora.md"),
            "--collection",
            COLLECTION,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr

    with httpx.Client(base_url=url, timeout=10) as client:
        assert depth(database_url, query) == 0

        def submit(key: str) -> str:
            body = {"query": f"When does Aurora open? ({key})", "collection": COLLECTION}
            response = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            assert response.status_code == 202, response.text
            job_id: str = response.json()["job_id"]
            return job_id

        keys: list[str] = []
        job_ids: list[str] = []
        for batch in (1, 4, 7):
            keys += [str(uuid.uuid4()) for _ in range(batch)]
            job_ids += [submit(key) for key in keys[len(job_ids) :]]
            # Jobs wait and none runs: one worker (the wait trigger scales beyond it).
            assert depth(database_url, query) == 1
        # A client's retry with the same key is the same job: nothing changes.
        assert submit(keys[0]) == job_ids[0]
        assert depth(database_url, query) == 1

        def statuses() -> list[str]:
            return [client.get(f"/v1/jobs/{j}").json()["status"] for j in job_ids]

        assert set(statuses()) == {"queued"}  # honest status while no worker runs

        # Scale from zero: a worker arrives; while it holds the jobs (slow LLM), they still
        # count (status 'picked'), so KEDA does not scale the busy worker away.
        llm.configure(ttft=3.0, tps=200)
        worker = start_worker(env)
        wait(lambda: set(statuses()) == {"running"}, 60, "all jobs running", worker)
        assert depth(database_url, query) == len(job_ids)
        wait(lambda: set(statuses()) == {"succeeded"}, 60, "all jobs succeeded", worker)
        # pgqueuer removes finished entries in batches, shortly after the jobs' results are
        # written: the count reaches 0 a moment later (KEDA polls every 10 s anyway).
        wait(lambda: depth(database_url, query) == 0, 10, "queue depth 0", worker)


def wait(check: Callable[[], Any], timeout: float, what: str, proc: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.popen.poll() is None, f"{proc.log_path.name} exited:\n{proc.log()[-3000:]}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s\n{proc.log()[-3000:]}"
        time.sleep(0.1)
