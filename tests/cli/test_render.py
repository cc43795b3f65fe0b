"""What ``jobs show``, ``jobs list`` and ``ask`` print, from bodies built by the server's models."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from ragserve.cli.render import print_job, print_job_table, print_sources
from ragserve.jobs.models import Job, JobError, JobStatus
from ragserve.kb.ingest import DocumentResult
from ragserve.kb.types import RetrievedChunk

CREATED = datetime(2025, 1, 1, 9, 30, tzinfo=UTC)


def body(job_id: str, status: JobStatus, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "job_id": job_id,
        "kind": "answer",
        "status": status,
        "query": "what is ragserve?",
        "collection": "default",
        "attempts": 1,
        "created_at": CREATED,
        "started_at": CREATED,
        "finished_at": CREATED,
        "result": None,
        "error": None,
    }
    return Job.model_validate(fields | changes).model_dump(mode="json")


def answered(job_id: str) -> dict[str, Any]:
    chunk = RetrievedChunk("c1", "d1", "guide.md", "ragserve   is\na service.", 0.91)
    result = {"answer": "A service [1]", "sources": [chunk.as_source()]}
    return body(job_id, JobStatus.succeeded, result=result)


def render(draw: Any, *args: Any, width: int = 120) -> str:
    buffer = io.StringIO()
    draw(*args, Console(file=buffer, width=width, color_system=None, force_terminal=False))
    return buffer.getvalue()


def test_job_with_answer_shows_fields_answer_and_sources() -> None:
    text = render(print_job, answered("j-42"))
    for expected in ("j-42", "answer", "succeeded", "what is ragserve?", "2025-01-01"):
        assert expected in text
    assert "A service [1]" in text
    # sources numbered like the citations, with the score and a one-line excerpt
    assert "guide.md" in text and "0.910" in text and "ragserve is a service." in text


def test_failed_job_shows_its_error() -> None:
    failed = body("j-43", JobStatus.failed, error=JobError(type="LLMError", message="boom"))
    text = render(print_job, failed)
    assert "failed" in text and "LLMError: boom" in text
    assert "Sources" not in text


def test_ingest_job_shows_one_line_per_document() -> None:
    documents = [
        DocumentResult("a.md", "d1", "ingested", 3).as_dict(),
        DocumentResult("b.pdf", None, "failed", 0, "not a PDF").as_dict(),
    ]
    job = body("j-44", JobStatus.succeeded, kind="ingest", query=None)
    job["result"] = {"documents": documents}
    lines = render(print_job, job).splitlines()
    assert any("a.md" in line and "ingested" in line and "3" in line for line in lines)
    assert any("b.pdf" in line and "failed" in line and "not a PDF" in line for line in lines)


def test_answer_without_sources() -> None:
    job = body("j-45", JobStatus.succeeded, result={"answer": "No idea.", "sources": []})
    assert render(print_sources, job) == "\nno sources\n"


def test_job_table_keeps_ids_whole_and_drops_created_when_narrow() -> None:
    jobs = [answered("0d6f5a51-8d6e-4a3e-9c1e-4f6f0f8f3a11"), body("j-2", JobStatus.queued)]
    wide = render(print_job_table, jobs)
    assert "0d6f5a51-8d6e-4a3e-9c1e-4f6f0f8f3a11" in wide
    assert "2025-01-01 09:30:00" in wide and "queued" in wide
    narrow = render(print_job_table, jobs, width=80)
    assert "0d6f5a51-8d6e-4a3e-9c1e-4f6f0f8f3a11" in narrow
    assert "2025-01-01" not in narrow
    assert render(print_job_table, []) == "no jobs\n"


def test_sources_show_page_and_heading_path() -> None:
    pdf = RetrievedChunk(
        "c1", "d1", "handbook.pdf", "23 days.", 0.9, {"_location": {"page": 12, "section": None}}
    )
    section = {"page": None, "section": ["Leave policy", "Annual leave"]}
    md = RetrievedChunk("c2", "d2", "guide.md", "Ask early.", 0.8, {"_location": section})
    job = body("j-46", JobStatus.succeeded)
    job["result"] = {"answer": "23 days [1]", "sources": [pdf.as_source(), md.as_source()]}
    text = render(print_sources, job, width=200)
    assert "handbook.pdf p. 12" in text
    assert "guide.md · Leave policy › Annual leave" in text


def test_app_job_shows_its_app_and_output() -> None:
    job = {
        "job_id": "j-7",
        "kind": "app",
        "app": "summarise",
        "status": "succeeded",
        "collection": "default",
        "attempts": 1,
        "result": {"output": {"summary": "三行摘要", "words": 3}},
    }
    text = render(print_job, job)
    assert "summarise" in text
    assert '"summary": "三行摘要"' in text and '"words": 3' in text
    text_output = render(print_job, {**job, "result": {"output": "plain text"}})
    assert "plain text" in text_output and '"plain text"' not in text_output
