"""The ``ragserve`` command as a user runs it: real subprocesses, real files, real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support import MockLLM, free_port, service_env
from support.http_front import Answer, HttpFront, Reset


def ragserve(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragserve", *args],
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_client_commands_without_a_service_exit_2_with_a_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["ask", "anything"], ["jobs", "list"], ["jobs", "show", "x"]):
        done = ragserve(*args, "--url", url, timeout=60)
        assert done.returncode == 2, done
        assert "ragserve serve" in done.stderr and "gave up after" in done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_ask_retries_a_busy_then_dropped_submission_with_one_key() -> None:
    draining = {"error": {"type": "Unavailable", "message": "draining"}}
    busy = Answer(503, draining, {"Retry-After": "1"})
    accepted = {"job_id": "j-42", "status": "queued", "status_url": "/v1/jobs/j-42"}
    with HttpFront().running() as front:
        front.plan("POST", "/v1/jobs", busy, Reset(), Answer(202, accepted))
        done = ragserve("ask", "anything?", "--no-wait", "--url", front.url, timeout=60)
        tries = front.requests("POST", "/v1/jobs")
    assert (done.returncode, done.stdout, done.stderr) == (0, "j-42\n", "")
    assert len(tries) == 3
    assert len({seen.headers["idempotency-key"] for seen in tries}) == 1


def test_ingest_walks_folders_reports_each_file_and_exits_1_on_failure(
    new_database_url: Callable[[], str], tmp_path: Path
) -> None:
    env = service_env(new_database_url())
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Alpha\nAlpha ships on Mondays.", encoding="utf-8")
    (folder / "sub" / "b.txt").write_bytes("贝塔项目周三发布。".encode("gb18030"))
    (folder / ".hidden.txt").write_text("never read", encoding="utf-8")
    (folder / "ignored.xyz").write_text("not a document", encoding="utf-8")
    good = ragserve("ingest", str(folder), "--collection", "cli", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "2 ingested" in good.stdout and "0 failed" in good.stdout
    assert "hidden" not in good.stdout and "ignored" not in good.stdout
    (folder / "broken.pdf").write_bytes(b"%PDF-1.5 truncated")
    again = ragserve("ingest", str(folder), "--collection", "cli", env=env)
    assert again.returncode == 1
    assert "2 unchanged" in again.stdout and "1 failed" in again.stdout
    assert "broken.pdf" in again.stdout
    assert "Traceback" not in again.stdout + again.stderr


def test_db_migrate(new_database_url: Callable[[], str]) -> None:
    env = service_env(new_database_url())
    first = ragserve("db", "migrate", env=env, timeout=120)
    assert first.returncode == 0 and "0001_knowledge_base" in first.stdout
    second = ragserve("db", "migrate", env=env, timeout=120)
    assert second.returncode == 0 and "up to date" in second.stdout


OFFICE = "The office opens at 8am. Badges are at the front desk."


def ingest_office(url: str) -> str:
    """Upload one document through the API, wait until a worker has ingested it; the job id."""
    documents = [{"source": "office.md", "text": OFFICE}]
    upload = httpx.post(f"{url}/v1/collections/default/documents", json={"documents": documents})
    job = wait_status(url, upload.json()["job_id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    return str(job["job_id"])


def wait_status(url: str, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := httpx.get(f"{url}/v1/jobs/{job_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_ask_streams_and_jobs_commands(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    start_service: Callable[..., tuple[str, object]],
) -> None:
    env = service_env(new_database_url(), llm_base_url=mock_llm.base_url, llm_model="mock")
    mock_llm.configure(ttft=0.05, tps=200, error_rate=0.0)
    url, _ = start_service(env)
    upload_id = ingest_office(url)
    shown = ragserve("jobs", "show", upload_id, "--url", url, timeout=60)
    assert shown.returncode == 0 and upload_id in shown.stdout
    assert "office.md" in shown.stdout and "ingested" in shown.stdout
    asked = ragserve("ask", "When does the office open?", "--url", url, timeout=120)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.startswith("The office opens at 8am. [1]\n")
    assert "office.md" in asked.stdout
    queued = ragserve("ask", "Where are badges?", "--no-wait", "--url", url, timeout=60)
    job_id = queued.stdout.strip()
    assert queued.returncode == 0 and len(job_id) == 36
    listed = ragserve("jobs", "list", "--url", url, timeout=60)
    assert listed.returncode == 0
    assert job_id in listed.stdout and upload_id in listed.stdout
    missing = ragserve("jobs", "show", "00000000-0000-0000-0000-000000000000", "--url", url)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_cancel_a_running_job_then_retry_it(
    new_database_url: Callable[[], str],
    mock_llm: MockLLM,
    start_service: Callable[..., tuple[str, Any]],
    start_worker: Callable[..., Any],
) -> None:
    """API and worker apart, and an LLM that takes a minute to answer, so every state is known:
    the job is running (its LLM call in flight) when it is cancelled, and with the worker
    stopped, the retried job stays queued until a new worker answers it."""
    env = service_env(new_database_url(), llm_base_url=mock_llm.base_url, llm_model="mock")
    url, _ = start_service(env, "api")
    worker = start_worker(env)
    ingest_office(url)
    mock_llm.configure(ttft=60, tps=200, error_rate=0.0)
    try:
        asked = ragserve("ask", "When does the office open?", "--no-wait", "--url", url)
        job_id = asked.stdout.strip()
        wait_status(url, job_id, {"running"})
        deadline = time.monotonic() + 30
        while mock_llm.stats()["in_flight"] < 1:  # the attempt waits for its first token
            assert time.monotonic() < deadline
            time.sleep(0.05)

        refused = ragserve("jobs", "retry", job_id, "--url", url)
        assert refused.returncode == 1
        assert f"error: 409 Conflict: job {job_id} is running" in refused.stderr
        assert httpx.get(f"{url}/v1/jobs/{job_id}").json()["status"] == "running"

        cancelled = ragserve("jobs", "cancel", job_id, "--url", url)
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancelled" in cancelled.stdout
        job = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        assert (job["status"], job["attempts"], job["result"]) == ("cancelled", 1, None)

        worker.stop()
        retried = ragserve("jobs", "retry", job_id, "--url", url)
        assert retried.returncode == 0, retried.stderr
        assert "queued" in retried.stdout
        job = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        assert (job["status"], job["attempts"]) == ("queued", 1)

        mock_llm.configure(ttft=0.05)
        start_worker(env)
        job = wait_status(url, job_id, {"succeeded", "failed", "cancelled"})
        assert (job["status"], job["attempts"]) == ("succeeded", 2)
        assert job["result"]["answer"] == "The office opens at 8am. [1]"
        again = ragserve("jobs", "retry", job_id, "--url", url)
        assert again.returncode == 1 and "409 Conflict" in again.stderr
    finally:
        mock_llm.configure(ttft=0.05, tps=200)


def test_demo_runs_end_to_end_on_embedded_defaults(tmp_path: Path) -> None:
    """The README's first command: embedded PostgreSQL, bundled samples, through HTTP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSERVE_")}
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-m", "ragserve", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / ".ragserve" / "pgdata").is_dir()  # the embedded default data dir
    for name in (
        "handbook_en.pdf",
        "benefits_zh.docx",
        "it_security_zh.txt",
        "office_guide_en.html",
        "onboarding_en.md",
    ):
        assert name in done.stdout
    found = int(done.stdout.split("/8 answers contain")[0].split()[-1])
    print(f"demo: {found}/8 answers contain the expected fact")
    assert found >= 6
