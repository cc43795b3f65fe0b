"""FastAPI returning a Celery task id, Celery workers, Redis as broker and result backend.

The stack a team builds when it does not use ragserve, written the way the usual tutorials
write it (the FastAPI + Celery guides of testdriven.io and of Celery's own docs):

* ``POST /v1/jobs`` ``{"query", "collection"}`` sends the Celery task ``answer`` and answers
  ``202 {"job_id", "status"}`` at once; ``POST /v1/noop`` sends the task ``noop``;
* ``GET /v1/jobs/{id}`` reads ``AsyncResult(id)``: ``{"job_id", "status": queued|running|
  succeeded|failed, "result"}``. The client polls it; there is no event stream;
* the task ``answer`` does what ragserve's answer job does: embeds the question with the same
  OpenAI-compatible embeddings server, searches the same passages in PostgreSQL + pgvector
  (one table, cosine distance, top 4), sends the prompt in the ``[1] (source: ...)`` format of
  ``ragserve.rag.prompts`` to the same mock LLM and returns the answer with its sources. Unlike
  ragserve it does not stream tokens anywhere: the LLM call is one blocking, non-streamed
  request (what a Celery task naturally does), which spares it ragserve's per-token work.

Configuration comes from the environment (``PEERS_*``, read when the app is built):
``PEERS_REDIS_URL`` (broker = database 0, results = database 1), ``PEERS_PG_URL``,
``PEERS_LLM_URL`` (with ``/v1``), ``PEERS_EMBEDDINGS_URL`` (with ``/v1``), ``PEERS_POOL_SIZE``
(PostgreSQL connections per worker process: its thread count) and ``PEERS_ACKS_LATE``
(``1``: ``task_acks_late``, ``task_reject_on_worker_lost``, ``worker_prefetch_multiplier=1``
and ``PEERS_VISIBILITY_TIMEOUT`` seconds, the settings Celery's docs give for tasks that must
survive a lost worker; ``0`` or unset: Celery's defaults).

Run (``bench/peers.py`` does it)::

    celery -A peers_celery.worker:celery_app worker --pool threads --concurrency 100
    uvicorn peers_celery.app:create_api --factory --port 8200
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
from celery import Celery
from celery.result import AsyncResult
from fastapi import FastAPI
from pydantic import BaseModel, Field

TOP_K = 4
SYSTEM = "Answer the question using only the numbered context passages. Cite them as [n]."
# Celery's states, in the words of ragserve's job model.
STATUS = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "RETRY": "queued",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
}


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"{name} is not set")
    return value


def make_celery() -> Celery:
    """The Celery app with its two tasks, configured from ``PEERS_*``."""
    redis = env("PEERS_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    app = Celery("peers", broker=f"{redis}/0", backend=f"{redis}/1")
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_track_started=True,  # so that a poll can tell "running" from "queued"
        broker_connection_retry_on_startup=True,
    )
    if env("PEERS_ACKS_LATE", "0") == "1":
        app.conf.update(
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            worker_prefetch_multiplier=1,
            broker_transport_options={
                "visibility_timeout": float(env("PEERS_VISIBILITY_TIMEOUT", "30")),
                # kombu sweeps for unacknowledged messages every interval x throttle seconds
                # (10 x 10 by default); its docs say to set the throttle to 1 with a low
                # visibility timeout, else a lost task waits up to 100 s more.
                "unacked_restore_throttle": 1,
            },
        )

    @app.task(name="answer")
    def answer(query: str, collection: str = "bench") -> dict[str, Any]:
        started = time.time()
        vector = embed(query)
        sources = search(collection, vector)
        text = ask_llm(query, sources)
        return {
            "answer": text,
            "sources": [{"source": s, "score": score} for s, _, score in sources],
            "started_at": started,
            "finished_at": time.time(),
        }

    @app.task(name="noop")
    def noop() -> dict[str, Any]:
        now = time.time()
        return {"answer": "", "started_at": now, "finished_at": now}

    return app


# --------------------------------------------------------------------------- the task's parts


_MADE = threading.Lock()  # the first tasks of a worker all start at once, on many threads


@functools.cache
def _http() -> httpx.Client:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    return httpx.Client(timeout=httpx.Timeout(120, connect=5), limits=limits)


def http() -> httpx.Client:
    """One HTTP client per worker process (thread-safe; made at the first task)."""
    with _MADE:
        return _http()


@functools.cache
def _pg_pool() -> Any:
    from psycopg_pool import ConnectionPool

    size = int(env("PEERS_POOL_SIZE", "10"))
    return ConnectionPool(env("PEERS_PG_URL"), min_size=size, max_size=size, open=True)


def pg_pool() -> Any:
    """One psycopg pool per worker process (``PEERS_POOL_SIZE`` connections)."""
    with _MADE:
        return _pg_pool()


def embed(text: str) -> list[float]:
    url = env("PEERS_EMBEDDINGS_URL").rstrip("/")
    response = http().post(f"{url}/embeddings", json={"input": [text], "model": "mock"})
    response.raise_for_status()
    vector: list[float] = response.json()["data"][0]["embedding"]
    return vector


def vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def search(collection: str, vector: Sequence[float]) -> list[tuple[str, str, float]]:
    """``(source, text, score)`` of the nearest passages (cosine)."""
    with pg_pool().connection() as conn:
        rows = conn.execute(
            "SELECT source, text, 1 - (embedding <=> %s::vector) AS score FROM peer_passages"
            " WHERE collection = %s ORDER BY embedding <=> %s::vector LIMIT %s",
            (vector_literal(vector), collection, vector_literal(vector), TOP_K),
        ).fetchall()
    return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]


def ask_llm(query: str, passages: Sequence[tuple[str, str, float]]) -> str:
    context = "\n\n".join(
        f"[{n}] (source: {source})\n{text.strip()}"
        for n, (source, text, _) in enumerate(passages, 1)
    )
    user = f"Context passages:\n\n{context}\n\nQuestion: {query}"
    url = env("PEERS_LLM_URL").rstrip("/")
    response = http().post(
        f"{url}/chat/completions",
        json={
            "model": "mock",
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
            "temperature": 0,
        },
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def seed_corpus(pg_url: str, embeddings_url: str, collection: str, docs: dict[str, str]) -> None:
    """The passages table, filled with ``docs`` (source -> text) and their embeddings."""
    import psycopg

    response = httpx.post(
        f"{embeddings_url.rstrip('/')}/embeddings",
        json={"input": list(docs.values()), "model": "mock"},
        timeout=30,
    )
    response.raise_for_status()
    vectors = [row["embedding"] for row in response.json()["data"]]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS peer_passages (id bigserial PRIMARY KEY,"
            " collection text NOT NULL, source text NOT NULL, text text NOT NULL,"
            f" embedding vector({len(vectors[0])}) NOT NULL)"
        )
        for (source, text), vector in zip(docs.items(), vectors, strict=True):
            conn.execute(
                "INSERT INTO peer_passages (collection, source, text, embedding)"
                " VALUES (%s, %s, %s, %s::vector)",
                (collection, source, text, vector_literal(vector)),
            )


# --------------------------------------------------------------------------- the HTTP API


class JobRequest(BaseModel):
    query: str = Field(min_length=1)
    collection: str = "bench"


def create_api() -> FastAPI:
    """The FastAPI app (``uvicorn --factory``). Endpoints are plain ``def``: ``delay`` and
    ``AsyncResult`` block on Redis, so FastAPI runs them in its thread pool."""
    celery_app = make_celery()
    api = FastAPI(title="FastAPI + Celery peer")

    @api.post("/v1/jobs", status_code=202)
    def submit(body: JobRequest) -> dict[str, str]:
        task = celery_app.send_task("answer", args=[body.query, body.collection])
        return {"job_id": task.id, "status": "queued"}

    @api.post("/v1/noop", status_code=202)
    def submit_noop() -> dict[str, str]:
        task = celery_app.send_task("noop")
        return {"job_id": task.id, "status": "queued"}

    @api.get("/v1/jobs/{job_id}")
    def status(job_id: str) -> dict[str, Any]:
        result = AsyncResult(job_id, app=celery_app)
        state = result.state
        body: dict[str, Any] = {"job_id": job_id, "status": STATUS.get(state, state.lower())}
        body["result"] = result.result if state == "SUCCESS" else None
        if state == "FAILURE":
            body["error"] = {"type": type(result.result).__name__, "message": str(result.result)}
        return body

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return api
