"""Idempotency keys and coalescing together, on a real database (no worker: jobs stay queued).

The bundled client sends a key with every submission (so that its retries are safe); that must
not stop identical questions in flight from sharing one computation.
"""

from __future__ import annotations

import pytest

from ragserve.db.pool import Database
from ragserve.errors import Conflict
from ragserve.jobs.models import AnswerRequest
from ragserve.jobs.service import JobService
from ragserve.jobs.store import JobStore, UploadedFile


@pytest.fixture
def service(db: Database) -> JobService:
    return JobService(
        db, JobStore(db), None, answerer_name="extractive", embedder_name="e5", max_attempts=3
    )


QUESTION = AnswerRequest(query="How many days of annual leave?", collection="hr")


async def test_keys_of_identical_questions_share_the_job_in_flight(service: JobService) -> None:
    first = await service.submit_answer(QUESTION, "key-a", tenant="default")
    second = await service.submit_answer(QUESTION, "key-b", tenant="default")
    unkeyed = await service.submit_answer(QUESTION, tenant="default")
    assert first.created and not first.coalesced
    assert second.coalesced and second.job.job_id == first.job.job_id
    assert unkeyed.coalesced and unkeyed.job.job_id == first.job.job_id


async def test_a_repeated_key_replays_its_job_even_when_it_was_coalesced(
    service: JobService,
) -> None:
    first = await service.submit_answer(QUESTION, "key-a", tenant="default")
    coalesced = await service.submit_answer(QUESTION, "key-b", tenant="default")
    replay = await service.submit_answer(QUESTION, "key-b", tenant="default")
    assert not replay.created and not replay.coalesced
    assert replay.job.job_id == coalesced.job.job_id == first.job.job_id


async def test_a_key_reused_with_another_body_or_kind_is_a_conflict(service: JobService) -> None:
    await service.submit_answer(QUESTION, "key-a", tenant="default")
    other = AnswerRequest(query="Who approves expenses?", collection="hr")
    with pytest.raises(Conflict, match="Idempotency-Key"):
        await service.submit_answer(other, "key-a", tenant="default")
    with pytest.raises(Conflict, match="Idempotency-Key"):
        await service.submit_ingest(
            "hr", [UploadedFile(source="a.txt", text="x")], "key-a", tenant="default"
        )


async def test_keys_on_ingest_jobs(service: JobService) -> None:
    files = [UploadedFile(source="a.txt", text="Annual leave is 20 days.")]
    first = await service.submit_ingest("hr", files, "upload-1", tenant="default")
    again = await service.submit_ingest("hr", files, "upload-1", tenant="default")
    other = await service.submit_ingest("hr", files, "upload-2", tenant="default")
    assert again.job.job_id == first.job.job_id and not again.created
    assert other.job.job_id != first.job.job_id and other.created
