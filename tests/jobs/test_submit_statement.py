"""The hot path of a submission: one statement, no transaction, and a queue entry that is the
one pgqueuer's own ``enqueue`` writes (the worker and pgqueuer's maintenance read it)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from pgqueuer.domain.settings import db_settings

from ragserve.db.pool import Database
from ragserve.jobs import queue
from ragserve.jobs.cache import stable_hash
from ragserve.jobs.models import AnswerRequest
from ragserve.jobs.service import JobService
from ragserve.jobs.store import JobStore, NewJob

TIMES = ("created", "updated", "heartbeat", "execute_after")


@pytest.fixture
def service(db: Database) -> JobService:
    return JobService(
        db, JobStore(db), None, answerer_name="extractive", embedder_name="e5", max_attempts=3
    )


async def entry_and_log(db: Database, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    names = db_settings().qualified
    async with db.connection() as conn:
        entry = await (
            await conn.execute(
                f"SELECT * FROM {names.queue_table} WHERE payload = %s", (job_id.encode(),)
            )
        ).fetchone()
        assert entry is not None
        logged = await (
            await conn.execute(
                f"SELECT * FROM {names.queue_table_log} WHERE job_id = %s", (entry["id"],)
            )
        ).fetchall()
    return entry, logged


async def test_the_entry_is_the_row_pgqueuers_enqueue_writes(
    service: JobService, db: Database
) -> None:
    ours = await service.submit_answer(AnswerRequest(query="Who approves leave?"), tenant="t1")
    # The same job written the old way: the job row, then pgqueuer's own enqueue.
    store = JobStore(db)
    body = {"query": "Who approves expenses?"}
    async with db.transaction() as conn:
        row = await store.insert(
            conn,
            NewJob(
                kind="answer",
                collection="default",
                query=body["query"],
                request=body,
                request_hash=stable_hash(body),
                max_attempts=3,
            ),
        )
        assert row is not None
        await queue.enqueue(conn, "answer", str(row["id"]))
    our_entry, our_log = await entry_and_log(db, ours.job.job_id)
    their_entry, their_log = await entry_and_log(db, str(row["id"]))
    for entry in (our_entry, their_entry):
        for column in TIMES:  # all "now" at insert
            assert abs((entry[column] - entry["created"]).total_seconds()) < 1
    skip = {"id", "payload", *TIMES}
    assert {k: v for k, v in our_entry.items() if k not in skip} == {
        k: v for k, v in their_entry.items() if k not in skip
    }
    assert our_entry["payload"] == ours.job.job_id.encode()
    skip_log = {"id", "job_id", "created"}
    assert [{k: v for k, v in r.items() if k not in skip_log} for r in our_log] == [
        {k: v for k, v in r.items() if k not in skip_log} for r in their_log
    ]
    assert len(our_log) == 1


async def test_a_submission_is_one_statement_without_a_transaction(
    service: JobService, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.submit_answer(AnswerRequest(query="warm-up"), tenant="default")
    sent: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if str(query).strip():  # the pool's check on checkout is an empty query
            sent.append(str(query))
        return await execute(self, query, *args, **kwargs)

    def no_transaction(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a plain submission opened a transaction")

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", counting)
    monkeypatch.setattr(psycopg.AsyncConnection, "transaction", no_transaction)
    submission = await service.submit_answer(
        AnswerRequest(query="How long is parental leave?"), tenant="default"
    )
    assert submission.created
    assert len(sent) == 1 and "INSERT INTO jobs" in sent[0]
    # With a new Idempotency-Key: the same one statement, which stores the key (no lookup).
    sent.clear()
    keyed = await service.submit_answer(AnswerRequest(query="Who signs off?"), "k1", tenant="t2")
    assert keyed.created and len(sent) == 1 and "job_idempotency_keys" in sent[0]
    # A retry with that key fails the statement (nothing written), then the transactional
    # path finds the key and replays the job.
    monkeypatch.undo()
    replay = await service.submit_answer(AnswerRequest(query="Who signs off?"), "k1", tenant="t2")
    assert replay.job.job_id == keyed.job.job_id and not replay.created
    async with db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT count(*) AS n FROM jobs WHERE request->>'query' = 'Who signs off?'"
            )
        ).fetchone()
    assert rows is not None and rows["n"] == 1


async def test_workers_hear_of_the_entry_at_once(service: JobService, db: Database) -> None:
    """pgqueuer's statement trigger notifies its channel, as for its own enqueue."""
    listener = await db.connect_dedicated()
    async with listener:
        await listener.execute(f"LISTEN {db_settings().channel}")
        await service.submit_answer(AnswerRequest(query="Where is the office?"), tenant="t3")

        async def first() -> str:
            async for notice in listener.notifies():
                return notice.payload
            raise AssertionError("no notification")

        payload = await asyncio.wait_for(first(), 5)
    assert '"operation" : "insert"' in payload or '"operation": "insert"' in payload
