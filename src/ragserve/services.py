"""Builds the long-lived objects of one process from ``Settings``, in one place.

The CLI commands and the app factory open a ``Services`` and pass its parts down; nothing in
ragserve creates these objects at import time. The job service and the worker are built here
too, so that a bare ``ragserve worker`` needs nothing of the HTTP side (no FastAPI, no uvicorn).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable

from ragserve.db.pool import Database
from ragserve.jobs.apps import (
    RAG_APP,
    App,
    AppRegistry,
    app_llm_settings,
    load_apps,
    parse_app_specs,
    select_queues,
    worker_queues,
)
from ragserve.jobs.estimates import QueueEstimator
from ragserve.jobs.notify import NotificationHub
from ragserve.jobs.routing import CanaryRouter
from ragserve.jobs.runner import JobRunner
from ragserve.jobs.service import JobService
from ragserve.jobs.store import JobStore
from ragserve.jobs.usage import TokenBudget
from ragserve.jobs.version import pipeline_version
from ragserve.jobs.worker import Worker, worker_slots
from ragserve.kb.breaker import breakers_of
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import Embedder, build_embedder, warm_up
from ragserve.kb.ingest import Ingestor
from ragserve.kb.loaders import DocumentLimits
from ragserve.kb.store import KnowledgeStore
from ragserve.rag.answerers import answerer_from_settings
from ragserve.rag.answerers.base import Answerer
from ragserve.rag.pipeline import build_answer_pipeline
from ragserve.rag.rerank import reranker_from_settings
from ragserve.rag.retrieval import Retriever
from ragserve.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    store: KnowledgeStore
    embedder: Embedder
    ingestor: Ingestor
    retriever: Retriever
    answerer: Answerer
    pipeline: Runnable[dict[str, Any], dict[str, Any]]
    apps: AppRegistry
    app_answerers: list[Answerer] = field(default_factory=list)
    """The answerers of the built-in pipeline's model classes (``NAME=ragserve:rag``)."""


@asynccontextmanager
async def open_services(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Services]:
    """Start (or join) the database, apply migrations, load the models; close all on exit."""
    # The apps first: a typo in RAGSERVE_APPS fails before anything starts.
    specs = parse_app_specs(settings.apps)
    runnables = load_apps(settings)
    db = await Database.from_settings(settings)
    await db.open(migrate=migrate)
    embedder = build_embedder(settings)
    store = KnowledgeStore(db)
    answerer = answerer_from_settings(settings, store=store, embedder=embedder)
    reranker = reranker_from_settings(settings)
    app_answerers: list[Answerer] = []
    try:
        await warm_up(embedder)
        if migrate:  # chunks written before the lexical index existed (idempotent, batched)
            await store.backfill_lexical()
        retriever = Retriever(
            store,
            embedder,
            mode=settings.retrieval,
            reranker=reranker,
            rerank_candidates=settings.rerank_candidates,
        )
        pipeline = build_answer_pipeline(retriever, answerer)
        apps = [App.of_pipeline(RAG_APP, pipeline, answerer.name)]
        for spec in specs:
            if spec.built_in:  # a model class of the built-in pipeline
                own = answerer_from_settings(
                    app_llm_settings(settings, spec.name, os.environ),
                    store=store,
                    embedder=embedder,
                )
                app_answerers.append(own)
                apps.append(
                    App.of_pipeline(spec.name, build_answer_pipeline(retriever, own), own.name)
                )
            else:
                apps.append(App.of_runnable(spec.name, runnables[spec.name], spec.target))
        yield Services(
            settings=settings,
            db=db,
            store=store,
            embedder=embedder,
            ingestor=Ingestor(
                store,
                embedder,
                Chunker(settings.chunk_size, settings.chunk_overlap),
                DocumentLimits(settings.max_document_chars, settings.max_document_pages),
            ),
            retriever=retriever,
            answerer=answerer,
            pipeline=pipeline,
            apps=AppRegistry(apps),
            app_answerers=app_answerers,
        )
    finally:
        for own in app_answerers:
            await own.aclose()
        if reranker is not None:
            await reranker.aclose()
        await answerer.aclose()
        await embedder.aclose()
        await db.close()


def build_job_service(services: Services, hub: NotificationHub | None) -> JobService:
    """What the API calls to submit, read and steer jobs; ``hub`` wakes waiters on new events."""
    return JobService(
        services.db,
        JobStore(services.db),
        hub,
        answerer_name=services.answerer.name,
        embedder_name=services.embedder.name,
        max_attempts=services.settings.max_attempts,
        router=CanaryRouter(services.settings.canary_percent),
        max_queued_per_tenant=services.settings.max_queued_per_tenant,
        apps=services.apps,
        estimator=QueueEstimator(services.apps.queues(), worker_slots(services.settings)),
        max_queue_wait_s=services.settings.max_queue_wait_s,
        budget=TokenBudget(services.settings.daily_token_budget),
    )


def build_worker(services: Services) -> Worker:
    """A worker that runs answer, ingest and app jobs with this process's models, on the
    queues of ``RAGSERVE_WORKER_QUEUES`` (``--queue``), default every queue."""
    store = JobStore(services.db)
    runner = JobRunner(
        store,
        services.store,
        services.apps,
        services.ingestor,
        services.settings.cache_ttl_s,
    )
    version = pipeline_version(
        services.settings, answerer=services.answerer.name, embedder=services.embedder.name
    )
    breakers = breakers_of(services.answerer, services.embedder)
    return Worker(
        services.db,
        store,
        runner,
        services.settings,
        version=version,
        breakers=breakers,
        queues=select_queues(services.apps.queues(), worker_queues(services.settings)),
    )
