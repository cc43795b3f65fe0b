"""The statement that starts an attempt also reads the job's collection (its stored name
computed in SQL as ``collection_key`` does), so an answer job needs no statement of its own."""

from __future__ import annotations

from ragserve.jobs.store import JobStore, NewJob
from ragserve.kb.store import KnowledgeStore


async def test_attempt_carries_its_tenants_collection(kb: KnowledgeStore) -> None:
    store = JobStore(kb.db)
    await kb.ensure_collection("docs", "embedder-a", 3, tenant="default")
    await kb.ensure_collection("docs", "embedder-b", 4, tenant="acme")
    attempts = {}
    for tenant, collection in (("default", "docs"), ("acme", "docs"), ("acme", "missing")):
        async with kb.db.transaction() as conn:
            row = await store.insert(
                conn,
                NewJob(
                    kind="answer",
                    collection=collection,
                    query="q?",
                    request={"query": "q?", "collection": collection},
                    request_hash=f"{tenant}/{collection}",
                    max_attempts=1,
                    tenant=tenant,
                ),
            )
        assert row is not None
        attempts[tenant, collection] = await store.start_attempt(str(row["id"]))
    for tenant in ("default", "acme"):
        attempt = attempts[tenant, "docs"]
        assert attempt is not None
        assert attempt.target == await kb.get_collection("docs", tenant=tenant)
    missing = attempts["acme", "missing"]
    assert missing is not None and missing.target is None
