"""Jobs written straight through the store, for tests of what workers and streams do with them."""

from __future__ import annotations

from ragserve.jobs.store import Attempt, JobStore, NewJob


async def inserted_job(store: JobStore) -> str:
    """A queued answer job (its first event: ``status`` queued), by id."""
    async with store.db.transaction() as conn:
        row = await store.insert(
            conn,
            NewJob(
                kind="answer",
                collection="kb",
                query="q?",
                request={"query": "q?"},
                request_hash="h",
                max_attempts=3,
            ),
        )
    assert row is not None
    return str(row["id"])


async def running_job(store: JobStore) -> Attempt:
    """A job taken by a worker: its events are ``status`` queued (1) and running (2)."""
    attempt = await store.start_attempt(await inserted_job(store))
    assert attempt is not None
    return attempt
