"""Tenant scoping of the job service and the knowledge base on a real database (no worker:
jobs stay queued, so coalescing and the queue limit can be watched at rest)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import psycopg
import pytest

from ragserve.db.migrate import available_migrations
from ragserve.db.pool import Database
from ragserve.errors import BudgetExhausted, NotFound, TenantQueueFull
from ragserve.jobs.cache import answer_cache_key
from ragserve.jobs.estimates import QueueEstimator
from ragserve.jobs.models import AnswerRequest
from ragserve.jobs.service import QUEUE_FULL_RETRY_AFTER_S, JobService
from ragserve.jobs.store import JobStore
from ragserve.jobs.usage import TokenBudget, set_tenant_budget
from ragserve.kb.store import KnowledgeStore
from support import child_env, ragserve_command, service_env

QUESTION = AnswerRequest(query="How many days of annual leave?", collection="hr")


def job_service(
    db: Database,
    limit: int | None = None,
    estimator: QueueEstimator | None = None,
    budget: TokenBudget | None = None,
) -> JobService:
    return JobService(
        db,
        JobStore(db),
        None,
        answerer_name="extractive",
        embedder_name="e5",
        max_attempts=3,
        max_queued_per_tenant=limit,
        estimator=estimator,
        budget=budget,
    )


async def test_coalescing_and_idempotency_keys_stay_within_a_tenant(db: Database) -> None:
    service = job_service(db)
    a1 = await service.submit_answer(QUESTION, tenant="a")
    a2 = await service.submit_answer(QUESTION, tenant="a")
    b1 = await service.submit_answer(QUESTION, tenant="b")
    assert a2.coalesced and a2.job.job_id == a1.job.job_id
    assert not b1.coalesced and b1.job.job_id != a1.job.job_id
    assert (a1.job.tenant, b1.job.tenant) == ("a", "b")

    # The same Idempotency-Key from two tenants names two jobs, not one.
    other = AnswerRequest(query="Who approves expenses?", collection="hr")
    ka = await service.submit_answer(other, "same-key", tenant="a")
    kb = await service.submit_answer(other, "same-key", tenant="b")
    assert ka.job.job_id != kb.job.job_id
    replay = await service.submit_answer(other, "same-key", tenant="b")
    assert (replay.created, replay.job.job_id) == (False, kb.job.job_id)

    # Another tenant's job is not found, exactly like a job that does not exist.
    with pytest.raises(NotFound):
        await service.get(a1.job.job_id, tenant="b")
    with pytest.raises(NotFound):
        await service.cancel(a1.job.job_id, tenant="b")
    assert (await service.get(a1.job.job_id, tenant=None)).tenant == "a"  # admin
    listed = await service.list(None, 50, tenant="b")
    assert {j.tenant for j in listed} == {"b"} and len(listed) == 2


def test_cache_keys_name_the_tenant_but_keep_the_default_tenants() -> None:
    keys = {t: answer_cache_key(QUESTION, "extractive", "e5", tenant=t) for t in ("default", "a")}
    assert keys["default"] != keys["a"]
    # The default tenant's key is the one computed before tenants existed: the same fields.
    from ragserve.jobs.cache import normalise_question, stable_hash

    before = stable_hash(
        {
            "q": normalise_question(QUESTION.query),
            "collection": "hr",
            "scope": None,
            "filters": None,
            "top_k": QUESTION.top_k,
            "answerer": "extractive",
            "embedder": "e5",
        }
    )
    assert keys["default"] == before


async def test_queue_limit_per_tenant(db: Database) -> None:
    service = job_service(db, limit=2)
    for n in range(2):
        await service.submit_answer(
            AnswerRequest(query=f"question {n}", collection="hr"), tenant="a"
        )
    # Coalesced onto a job in flight: no new work, never refused.
    same = await service.submit_answer(
        AnswerRequest(query="question 0", collection="hr"), tenant="a"
    )
    assert same.coalesced
    with pytest.raises(TenantQueueFull, match="RAGSERVE_MAX_QUEUED_PER_TENANT") as refused:
        await service.submit_answer(AnswerRequest(query="question 2", collection="hr"), tenant="a")
    assert refused.value.retry_after_s == QUEUE_FULL_RETRY_AFTER_S
    assert len(await service.list(None, 50, tenant="a")) == 2  # the refused job was rolled back
    # Another tenant has its own allowance.
    await service.submit_answer(AnswerRequest(query="question 2", collection="hr"), tenant="b")
    # A finished job frees its place.
    first = (await service.list(None, 50, tenant="a"))[-1]
    await service.cancel(first.job_id, tenant="a")
    await service.submit_answer(AnswerRequest(query="question 2", collection="hr"), tenant="a")


async def test_queue_limit_retry_after_comes_from_the_queue_estimate(db: Database) -> None:
    # Ten answer jobs that each ran 10 s, just now: the queue's mean service time is known.
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO jobs (tenant, kind, app, collection, query, request, max_attempts,"
            " request_hash, status, created_at, started_at, finished_at)"
            " SELECT 'c', 'answer', 'rag', 'hr', 'q' || n, '{}', 3, 'h', 'succeeded',"
            " now() - interval '21 s', now() - interval '20 s', now() - interval '10 s'"
            " FROM generate_series(1, 10) n"
        )
    service = job_service(db, limit=2, estimator=QueueEstimator(["answer"], 2))
    for n in range(2):
        await service.submit_answer(AnswerRequest(query=f"q{n}", collection="hr"), tenant="a")
    with pytest.raises(TenantQueueFull) as refused:
        await service.submit_answer(AnswerRequest(query="q2", collection="hr"), tenant="a")
    # No live worker: 2 slots assumed. The refused job would have had 2 jobs ahead, 2 slots
    # free: it starts when 1 slot frees, 10 s / 2 = 5 s; plus one service time, 10 s.
    assert refused.value.retry_after_s == pytest.approx(15.0, abs=1.0)


async def test_the_daily_token_budget_is_each_tenants_own(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO usage (tenant, day, jobs, prompt_tokens)"
            " VALUES ('a', (now() AT TIME ZONE 'UTC')::date, 3, 100)"
        )
    service = job_service(db, budget=TokenBudget(100))
    with pytest.raises(BudgetExhausted, match="tenant 'a'"):
        await service.submit_answer(QUESTION, tenant="a")
    assert (await service.submit_answer(QUESTION, tenant="b")).created
    assert await service.list(None, 50, tenant="a") == []


async def test_a_tenants_own_budget_replaces_the_default(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO usage (tenant, day, jobs, prompt_tokens) VALUES"
            " ('small', (now() AT TIME ZONE 'UTC')::date, 1, 60),"
            " ('large', (now() AT TIME ZONE 'UTC')::date, 1, 600)"
        )
    # Set through the command line, as an operator does.
    env = child_env(service_env(db.url))
    for tenant, tokens in (("small", "50"), ("large", "1000")):
        done = subprocess.run(
            ragserve_command("keys", "budget", "--tenant", tenant, "--daily-tokens", tokens),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"{tokens} tokens a day" in done.stdout
    service = job_service(db, budget=TokenBudget(100))
    with pytest.raises(BudgetExhausted, match="its own budget") as refused:
        await service.submit_answer(QUESTION, tenant="small")  # 60 of its own 50
    assert "60 of its 50 tokens" in str(refused.value)
    assert (await service.submit_answer(QUESTION, tenant="large")).created  # 600 of 1000
    # Without a budget of its own a tenant has the default (100), also when none is set.
    # (A new question each time: one identical to a job in flight shares it, never refused.)
    async with db.transaction() as conn:
        await set_tenant_budget(conn, "large", None)
    with pytest.raises(BudgetExhausted, match="RAGSERVE_DAILY_TOKEN_BUDGET"):
        await job_service(db, budget=TokenBudget(100)).submit_answer(
            AnswerRequest(query="a second question", collection="hr"), tenant="large"
        )
    assert (
        await job_service(db, budget=TokenBudget(None)).submit_answer(
            AnswerRequest(query="another question", collection="hr"), tenant="large"
        )
    ).created


async def test_rows_of_the_release_before_tenants_belong_to_the_default_tenant(
    new_database_url: Callable[[], str],
) -> None:
    """Schema up to 0006, rows written as that release wrote them (no tenant), then 0007."""
    url = new_database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ragserve_schema_migrations (version int PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in available_migrations():
            if m.version < 7:
                conn.execute(m.sql.encode())  # our own migration files
                conn.execute(
                    "INSERT INTO ragserve_schema_migrations (version, name) VALUES (%s, %s)",
                    (m.version, m.name),
                )
        conn.execute(
            "INSERT INTO collections (name, embedder, embedding_dim) VALUES ('hr', 'e5', 3)"
        )
        conn.execute(
            "INSERT INTO documents (collection, source, content_hash) VALUES ('hr', 'a.txt', 'x')"
        )
        job_id = conn.execute(
            "INSERT INTO jobs (kind, collection, query, request, max_attempts, request_hash)"
            " VALUES ('answer', 'hr', 'q', '{}', 3, 'h') RETURNING id::text"
        ).fetchone()
    assert job_id is not None
    db = Database(url, max_size=2)
    applied = await db.open()
    try:
        assert "0007_tenants" in applied
        kb = KnowledgeStore(db)
        assert [c["name"] for c in await kb.list_collections(tenant="default")] == ["hr"]
        assert [d["source"] for d in await kb.list_documents("hr", tenant="default")] == ["a.txt"]
        assert await kb.list_collections(tenant="b") == []
        with pytest.raises(NotFound):
            await kb.list_documents("hr", tenant="b")
        service = job_service(db)
        assert (await service.get(job_id[0], tenant="default")).collection == "hr"
        with pytest.raises(NotFound):
            await service.get(job_id[0], tenant="b")
    finally:
        await db.close()
