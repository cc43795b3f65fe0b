"""The job service: what the API (and anything else) calls to create, read and steer jobs.

Callers use this class only; its store, queue and notification hub are its own business.

Every method names the tenant it acts for (keyword-only, required): submissions create the
tenant's jobs on the tenant's collections; reads and steering see only the tenant's jobs
(``tenant=None``: every tenant's, for admins). Another tenant's job is ``NotFound``, exactly as
a job that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from pydantic import ValidationError

from ragserve.db.pool import Connection, Database
from ragserve.errors import Conflict, NotFound, QueueFull, TenantQueueFull, TooManyRequests
from ragserve.jobs import queue
from ragserve.jobs.apps import RAG_APP, AppRegistry, check_config
from ragserve.jobs.cache import answer_cache_key, stable_hash
from ragserve.jobs.estimates import QueueEstimator, wait_falls_under
from ragserve.jobs.models import AnswerRequest, AppJobRequest, Job, JobEvent, JobStatus
from ragserve.jobs.notify import Feed, NotificationHub
from ragserve.jobs.routing import CanaryRouter
from ragserve.jobs.store import JobStore, NewJob, UploadedFile
from ragserve.jobs.usage import TokenBudget
from ragserve.names import check_collection_name

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "ragserve_job_events_v2"
"""Where each stored event is published with its content (migration 0010; JSON keyed by
``job_id``). Migration 0002's ``ragserve_job_events`` (the job id only) is still sent, for the
API processes of earlier releases during a rolling upgrade."""

EVENTS_PAGE = 500
"""Stored events read per statement when a stream starts, resumes or catches up."""

WAIT_RECHECK_S = 5.0
"""``JobService.wait`` reads the job at least this often even without news, in case."""

QUEUE_LIMIT_LOCK = 0x7274_716C  # "rtql": first half of the per-tenant submission lock

QUEUE_FULL_RETRY_AFTER_S = 30.0
"""``Retry-After`` of a submission over ``RAGSERVE_MAX_QUEUED_PER_TENANT`` while no estimate of
the queue's wait is known (a conservative constant; see ``JobService.retry_after_s``)."""


@dataclass(frozen=True)
class Submission:
    """A job handed back by ``submit_*``, with how it came to be."""

    job: Job
    created: bool
    coalesced: bool = False
    estimated_start_s: float | None = None
    """Seconds until a worker starts the job (0: it has started); None while unknown."""


class JobService:
    def __init__(
        self,
        db: Database,
        store: JobStore,
        hub: NotificationHub | None,
        *,
        answerer_name: str,
        embedder_name: str,
        max_attempts: int,
        router: CanaryRouter | None = None,
        max_queued_per_tenant: int | None = None,
        apps: AppRegistry | None = None,
        estimator: QueueEstimator | None = None,
        max_queue_wait_s: float | None = None,
        budget: TokenBudget | None = None,
    ) -> None:
        """``apps``: the apps whose jobs this service submits (None: answer and ingest only);
        ``estimator``: the queue loads behind ``estimated_start_s`` (None: always null);
        ``max_queue_wait_s``: refuse new jobs expected to wait longer (``QueueFull``);
        ``budget``: refuse new answer and app jobs of tenants past their daily tokens."""
        self._db = db
        self._apps = apps
        self._router = router or CanaryRouter(percent=0)
        self._estimator = estimator
        self._max_queue_wait_s = max_queue_wait_s
        self._budget = budget
        self._store = store
        self._hub = hub
        self.answerer_name = answerer_name
        self.embedder_name = embedder_name
        self.max_attempts = max_attempts
        self.max_queued_per_tenant = max_queued_per_tenant

    # -- submitting ------------------------------------------------------------------

    async def submit_answer(
        self,
        request: AnswerRequest,
        idempotency_key: str | None = None,
        *,
        tenant: str,
    ) -> Submission:
        """Cache hit: a job already succeeded. Same question in flight: that job. Else a new one,
        unless the queue is too long, or ``tenant``'s token budget is used up or its queue
        limit reached (``429``). All within ``tenant``: its collection, its cache, its jobs in
        flight."""
        body = request.model_dump(mode="json")
        cache_key = answer_cache_key(request, self.answerer_name, self.embedder_name, tenant=tenant)
        new = NewJob(
            tenant=tenant,
            kind="answer",
            collection=request.collection,
            query=request.query,
            request=body,
            request_hash=stable_hash(body),
            max_attempts=self.max_attempts,
            cache_key=cache_key,
            idempotency_key=idempotency_key,
            app=RAG_APP,
        )

        async def attempt(conn: Connection) -> Submission:
            if (cached := await self._store.cached_result(conn, cache_key)) is not None:
                row = await self._store.insert_cached(conn, new, cached)
                return Submission(Job.from_row(row), created=True)
            # An identical question in flight makes the insert a no-op: see _insert_and_enqueue.
            return await self._insert_and_enqueue(conn, new, budgeted=True)

        return await self._submit(new, attempt, one_statement=True)

    async def submit_app(
        self,
        name: str,
        request: AppJobRequest,
        idempotency_key: str | None = None,
        *,
        tenant: str,
    ) -> Submission:
        """A job of the app ``name`` (``NotFound`` if this process has no such app) owned by
        ``tenant``. Its input is checked against the app's input schema now (``InvalidInput``
        naming the field), so that no job exists for an input the Runnable cannot take.
        Instances of the built-in pipeline are cached and coalesced like answer jobs, within
        the tenant; other apps are not (their output need not be a function of their input).
        Refused (``429``) like an answer job."""
        if self._apps is None or name not in self._apps:
            raise NotFound(f"app {name!r} not found (GET /v1/apps lists them)")
        app = self._apps.get(name)
        value = app.check_input(request.input)
        body = {"app": name, "input": value, "config": check_config(request.config) or None}
        answer = AnswerRequest.model_validate(value) if app.adapter == "answer" else None
        cache_key = None
        if answer is not None and app.fingerprint is not None:
            answer_key = answer_cache_key(
                answer, app.fingerprint, self.embedder_name, tenant=tenant
            )
            cache_key = stable_hash({"app": name, "answer": answer_key})
        new = NewJob(
            tenant=tenant,
            kind="app",
            collection=answer.collection if answer is not None else "",
            query=answer.query if answer is not None else None,
            request=body,
            request_hash=stable_hash(body),
            max_attempts=self.max_attempts,
            cache_key=cache_key,
            idempotency_key=idempotency_key,
            app=name,
            queue=app.queue,
        )

        async def attempt(conn: Connection) -> Submission:
            if (
                cache_key is not None
                and (cached := await self._store.cached_result(conn, cache_key)) is not None
            ):
                row = await self._store.insert_cached(conn, new, cached)
                return Submission(Job.from_row(row), created=True)
            return await self._insert_and_enqueue(conn, new, budgeted=True)

        return await self._submit(new, attempt, one_statement=True)

    def apps(self) -> list[dict[str, object]]:
        """``GET /v1/apps``: each app's name, queue and JSON schemas."""
        return [
            {
                "name": app.name,
                "queue": app.queue,
                "input_schema": app.input_schema,
                "output_schema": app.output_schema,
            }
            for app in (self._apps or ())
        ]

    async def submit_ingest(
        self,
        collection: str,
        files: Sequence[UploadedFile],
        idempotency_key: str | None = None,
        *,
        tenant: str,
    ) -> Submission:
        check_collection_name(collection)
        request = {
            "collection": collection,
            "documents": [
                {
                    "source": f.source,
                    "metadata": f.metadata or {},
                    "sha256": stable_hash([f.text, f.data.hex() if f.data else None]),
                }
                for f in files
            ],
        }
        new = NewJob(
            tenant=tenant,
            kind="ingest",
            collection=collection,
            query=None,
            request=request,
            request_hash=stable_hash(request),
            max_attempts=self.max_attempts,
            idempotency_key=idempotency_key,
        )

        async def attempt(conn: Connection) -> Submission:
            submission = await self._insert_and_enqueue(conn, new)
            await self._store.add_files(conn, submission.job.job_id, files)
            return submission

        return await self._submit(new, attempt)

    async def _submit(
        self,
        new: NewJob,
        attempt: Callable[[Connection], Awaitable[Submission]],
        *,
        one_statement: bool = False,
    ) -> Submission:
        """``one_statement``: ``new`` (an answer or app job, budgeted) may be queued by one
        statement (``_submit_in_one_statement``), the hot path; whatever that cannot settle
        alone goes the transactional way, ``attempt`` on a transaction's connection."""
        # Two tries: the one statement does not look the Idempotency-Key up first, so a key
        # already used (a client's retry) fails it with a UniqueViolation and nothing is
        # written; and a concurrent twin (same key, or same question) may win the unique index
        # between our read and our insert. The second try, transactional, then finds it.
        for last_try in (False, True):
            try:
                # One connection for both paths: a fallback costs no second checkout.
                async with self._db.connection() as conn:
                    fast = one_statement and not last_try and self.max_queued_per_tenant is None
                    if fast and (submission := await self._submit_in_one_statement(conn, new)):
                        return submission
                    async with conn.transaction():
                        return await self._submit_in_transaction(conn, new, attempt)
            except psycopg.errors.UniqueViolation:
                if last_try:
                    raise
        raise AssertionError("unreachable")

    async def _submit_in_transaction(
        self, conn: Connection, new: NewJob, attempt: Callable[[Connection], Awaitable[Submission]]
    ) -> Submission:
        key = new.idempotency_key
        if key is None:
            return await self._estimated(conn, await attempt(conn))
        existing = await self._store.by_idempotency_key(conn, key, tenant=new.tenant)
        if existing is not None:
            return await self._estimated(conn, self._replay(existing, new))
        submission = await attempt(conn)
        await self._store.remember_key(
            conn, key, submission.job.job_id, new.request_hash, tenant=new.tenant
        )
        return await self._estimated(conn, submission)

    async def _submit_in_one_statement(self, conn: Connection, new: NewJob) -> Submission | None:
        """The common submission in one write, without ``BEGIN``/``COMMIT``: a new job with
        no cached answer and no twin in flight, admitted, and no per-tenant queue limit to
        count under a lock. The only reads before it are per-process cached ones (canary
        liveness, queue estimate, token budget: at most one statement a second each).
        None: the transactional path must decide (a cached answer, a twin in flight, or a
        refusal, which an identical question in flight overrides).

        The key is not looked up first: a new key (the usual case) costs no read, and a key
        already used makes the statement fail with a UniqueViolation (``_submit`` then retries
        the transactional way, which replays the job or answers ``409``)."""
        queue_name = await self._router.queue_for(conn, new.queue or new.kind)
        wait_s = await self._estimator.wait_s(conn, queue_name) if self._estimator else None
        try:
            await self._admit(conn, queue_name, wait_s, new.tenant)
        except TooManyRequests:
            return None
        row = await self._store.insert_and_enqueue(
            conn, new, queue_name, check_cache=True, remember_key=True
        )
        if row is None:
            return None
        return await self._estimated(conn, self._queued(new, row, queue_name, wait_s))

    @staticmethod
    def _replay(existing: dict[str, Any], new: NewJob) -> Submission:
        if existing["body_hash"] != new.request_hash or existing["kind"] != new.kind:
            raise Conflict(
                f"Idempotency-Key was already used with a different request (job {existing['id']})"
            )
        return Submission(Job.from_row(existing), created=False)

    async def _insert_and_enqueue(
        self, conn: Connection, new: NewJob, *, budgeted: bool = False
    ) -> Submission:
        """Queue ``new``; ``budgeted``: check its tenant's token budget first (answer and app
        jobs). Then its tenant's queue limit, once the job is inserted."""
        queue_name = await self._router.queue_for(conn, new.queue or new.kind)
        wait_s = await self._estimator.wait_s(conn, queue_name) if self._estimator else None
        try:
            await self._admit(conn, queue_name, wait_s, new.tenant if budgeted else None)
        except TooManyRequests:
            # An identical question in flight costs nothing more: share it, never refuse it.
            if new.cache_key and (row := await self._store.in_flight(conn, new.cache_key)):
                return Submission(Job.from_row(row), created=False, coalesced=True)
            raise
        # The key, if any, is remembered by _submit, for new and coalesced jobs alike.
        row = await self._store.insert_and_enqueue(
            conn, new, queue_name, check_cache=False, remember_key=False
        )
        if row is None:  # lost the race to an identical question: share its computation
            row = await self._store.in_flight(conn, new.cache_key or "")
            if row is None:
                raise psycopg.errors.UniqueViolation("in-flight job vanished; try again")
            return Submission(Job.from_row(row), created=False, coalesced=True)
        # Over the limit: the job and its entry roll back with the transaction (the entry's
        # NOTIFY is sent at commit only, so no worker hears of it).
        await self._check_queue_limit(conn, new.tenant, queue_name, wait_s)
        return self._queued(new, row, queue_name, wait_s)

    def _queued(
        self, new: NewJob, row: dict[str, Any], queue_name: str, wait_s: float | None
    ) -> Submission:
        """The submission of a job just inserted with its entry in ``queue_name``."""
        if self._estimator is not None:
            self._estimator.enqueued(queue_name)
        job = Job.from_row(row)
        log.info(
            "job queued", extra={"event": "job.queued", "job_id": job.job_id, "kind": new.kind}
        )
        return Submission(job, created=True, estimated_start_s=wait_s)

    async def _admit(
        self, conn: Connection, queue_name: str, wait_s: float | None, tenant: str | None
    ) -> None:
        """Raise ``TooManyRequests`` if a new job may not enter ``queue_name`` now."""
        limit = self._max_queue_wait_s
        if limit is not None and wait_s is not None and wait_s > limit:
            retry_s = wait_falls_under(wait_s, limit)
            raise QueueFull(
                f"the estimated wait in queue {queue_name!r} is {wait_s:.0f} s, over"
                f" RAGSERVE_MAX_QUEUE_WAIT_S ({limit:g} s); retry in {retry_s:.0f} s",
                retry_after_s=retry_s,
            )
        if tenant is not None and self._budget is not None:
            await self._budget.check(conn, tenant)

    async def _estimated(self, conn: Connection, submission: Submission) -> Submission:
        """``submission`` with its ``estimated_start_s``: the estimate made when it was queued;
        for a job found (coalesced, replayed) that still waits, the wait behind its whole
        queue (an upper bound: it may be further ahead); 0 for one that has started."""
        if submission.estimated_start_s is not None:
            return submission
        if submission.job.status != JobStatus.queued:
            return replace(submission, estimated_start_s=0.0)
        if self._estimator is None:
            return submission
        wait_s = await self._estimator.wait_s(conn, self._queue_of(submission.job))
        return replace(submission, estimated_start_s=wait_s)

    async def _check_queue_limit(
        self, conn: Connection, tenant: str, queue_name: str, wait_s: float | None
    ) -> None:
        """After inserting a new job: if that puts ``tenant`` over its limit, refuse it (the
        transaction, and with it the job, is rolled back). Coalesced and cached submissions
        add no work, so they are never refused. ``wait_s``: the estimated wait in
        ``queue_name`` before this job (for ``Retry-After``)."""
        limit = self.max_queued_per_tenant
        if limit is None:
            return
        active = await self._store.active_count(conn, tenant, lock=QUEUE_LIMIT_LOCK)
        if active > limit:
            raise TenantQueueFull(
                f"tenant {tenant!r} has {active - 1} jobs queued or running, the most"
                f" RAGSERVE_MAX_QUEUED_PER_TENANT ({limit}) allows; retry later",
                retry_after_s=await self.retry_after_s(conn, queue_name, wait_s),
            )

    async def retry_after_s(self, conn: Connection, queue_name: str, wait_s: float | None) -> float:
        """When a submission refused by its tenant's queue limit should come back: once one of
        the tenant's jobs has likely finished. From the queue's estimate (``estimated_start_s``
        of a job entering it now, ``wait_s``): by then every job queued now, the tenant's
        included, has started, and one mean service time later the first of them is most
        likely done, so ``wait_s`` + the mean service time (an upper bound, at least 1 s).
        Without an estimate (no estimator, or no job of the queue ran lately): the
        conservative ``QUEUE_FULL_RETRY_AFTER_S``."""
        if self._estimator is None or wait_s is None:
            return QUEUE_FULL_RETRY_AFTER_S
        service_s = (await self._estimator.load(conn, queue_name)).service_s
        if service_s is None:
            return QUEUE_FULL_RETRY_AFTER_S
        return max(1.0, wait_s + service_s)

    # -- reading and steering --------------------------------------------------------

    async def get(self, job_id: str, *, tenant: str | None) -> Job:
        """The job, if it is ``tenant``'s (any tenant's when None); else ``NotFound``."""
        job = await self._store.get(job_id, tenant=tenant)
        if job is None:
            raise _not_found(job_id)
        return job

    async def list(self, status: JobStatus | None, limit: int, *, tenant: str | None) -> list[Job]:
        return await self._store.newest(status, limit, tenant=tenant)

    async def count_by_status(self) -> dict[JobStatus, int]:
        """How many jobs are in each status (every status, zeros included)."""
        counts = await self._store.count_by_status()
        return {status: counts.get(status.value, 0) for status in JobStatus}

    async def cancel(self, job_id: str, *, tenant: str | None) -> Job:
        await self.get(job_id, tenant=tenant)
        async with self._db.transaction() as conn:
            before = await self._store.cancel(conn, job_id)
            if before is not None:
                if before["previous"] == "queued":
                    await queue.withdraw(conn, job_id)
                else:
                    await queue.signal_cancel(conn, job_id)
        if before is not None:
            log.info("job cancelled", extra={"event": "job.cancelled", "job_id": job_id})
        return await self.get(job_id, tenant=tenant)

    async def retry(self, job_id: str, *, tenant: str | None) -> Job:
        job = await self.get(job_id, tenant=tenant)
        async with self._db.transaction() as conn:
            if not await self._store.reopen(conn, job_id, self.max_attempts):
                raise Conflict(f"job {job_id} is {job.status}: only failed or cancelled jobs retry")
            await queue.enqueue(
                conn, await self._router.queue_for(conn, self._queue_of(job)), job_id
            )
        log.info("job retried", extra={"event": "job.retried", "job_id": job_id})
        return await self.get(job_id, tenant=tenant)

    def _queue_of(self, job: Job) -> str:
        if self._apps is None:
            return job.kind
        return self._apps.queue_of(job.kind, job.app)

    def events(
        self,
        job_id: str,
        after: int,
        *,
        idle_s: float,
        tenant: str | None,
        job: Job | None = None,
    ) -> AsyncIterator[JobEvent | None]:
        """The job's events after ``after``: stored ones first, then live ones, until the
        terminal one. ``None`` after each ``idle_s`` without news (for keep-alives).
        ``job``: the job as the caller has just read it for ``tenant`` (saves a read).

        Live events come from the notifications' payloads (migration 0010), not from the
        table. Never loses an event: we follow the job's notifications before reading the
        table, take a notified event only if it is the one after the last sent (``seq``), and
        read the table again from the last one sent on a gap, an event too large to be
        notified, and a feed that overflowed or was lost (the listener reconnected); without
        a hub, after each ``idle_s``.
        """
        return self._events(job_id, after, idle_s=idle_s, tenant=tenant, job=job, opening=False)

    async def open_events(
        self, job_id: str, after: int, *, idle_s: float, tenant: str | None
    ) -> AsyncIterator[JobEvent | None]:
        """``events``, already open: the job's notifications followed, then the job and its
        first stored events read on one connection in one round trip (an event stream's
        opening: one pool checkout instead of two). ``NotFound`` is raised here, before the
        caller has answered anything. The caller must iterate or close the result (dropped
        unclosed, it is closed when collected, by the event loop's async-generator hooks)."""
        events = self._events(job_id, after, idle_s=idle_s, tenant=tenant, job=None, opening=True)
        await anext(events)  # the opening's mark
        return events

    async def _events(
        self,
        job_id: str,
        after: int,
        *,
        idle_s: float,
        tenant: str | None,
        job: Job | None,
        opening: bool,
    ) -> AsyncIterator[JobEvent | None]:
        """``events``; with ``opening`` (and no ``job``), the job is read after following
        it, together with its first page of events, and a ``None`` marks the opening."""
        if job is None and not opening:
            job = await self.get(job_id, tenant=tenant)  # NotFound before anything is read
        last = after
        async with self._follow(
            job.job_id if job is not None else canonical_job_id(job_id)
        ) as feed:
            first_page: Sequence[JobEvent] | None = None
            if job is None:
                job, first_page = await self._store.get_with_events_after(
                    job_id, tenant=tenant, after=after, limit=EVENTS_PAGE
                )
                if job is None:
                    raise _not_found(job_id)
                yield None  # open: the caller (open_events) takes this mark
            first_read = True
            read_table = True
            while True:
                if read_table:
                    read_table = False
                    found = False
                    async for event in self._stored_events(job.job_id, last, first_page):
                        found = True
                        last = event.seq
                        yield event
                        if event.terminal:
                            return
                    first_page = None
                    if first_read and not found and job.status.terminal:
                        # Read before the table, and the terminal event commits with the
                        # status: the client resumed after the terminal event.
                        return
                    first_read = False
                if not await feed.wait(idle_s):
                    yield None
                    # Without a hub nothing is notified: look. With one, a notification is
                    # only lost with the listener's connection, which marks the feed lost.
                    read_table = self._hub is None
                    continue
                messages = feed.take()
                if messages is None:
                    read_table = True
                    continue
                for message in messages:
                    seq = message.get("seq")
                    if isinstance(seq, int) and seq <= last:
                        continue  # sent already (read from the table)
                    notified = published_event(message)
                    if notified is None or notified.seq != last + 1:
                        read_table = True  # too large to publish, or a gap: read it
                        break
                    last = notified.seq
                    yield notified
                    if notified.terminal:
                        return

    async def _stored_events(
        self, job_id: str, after: int, first_page: Sequence[JobEvent] | None = None
    ) -> AsyncIterator[JobEvent]:
        """Every stored event of the job after ``after``, a page at a time (the first one
        ``first_page`` when the caller has read it already)."""
        while True:
            if first_page is not None:
                page, first_page = first_page, None
            else:
                page = await self._store.events_after(job_id, after, limit=EVENTS_PAGE)
            for event in page:
                yield event
            if len(page) < EVENTS_PAGE:
                return
            after = page[-1].seq

    async def wait(self, job_id: str, timeout_s: float, *, tenant: str | None) -> Job:
        """The job once it is terminal, or as it is when ``timeout_s`` has passed.

        Reads the job at the start, then again only when its notifications may say it ended
        (a terminal event, an event too large to be notified, a lost feed), and at least every
        ``WAIT_RECHECK_S`` (every second without a hub), in case.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        recheck_s = WAIT_RECHECK_S if self._hub is not None else 1.0
        async with self._follow(canonical_job_id(job_id)) as feed:
            while True:
                job = await self.get(job_id, tenant=tenant)
                remaining = deadline - loop.time()
                if job.status.terminal or remaining <= 0:
                    return job
                await _until_it_may_end(feed, min(remaining, recheck_s))

    def _follow(self, job_id: str) -> contextlib.AbstractAsyncContextManager[Feed]:
        """The job's events as they are notified (keyed by its canonical id); without a hub, a
        feed that never brings anything (callers then read the table on their timeouts)."""
        if self._hub is None:
            return contextlib.nullcontext(Feed())
        return self._hub.follow(EVENTS_CHANNEL, job_id, key_field="job_id")


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"job {job_id!r} not found")


def canonical_job_id(job_id: str) -> str:
    """``job_id`` as PostgreSQL prints it (the key of its notifications), if it is a UUID."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        return job_id


def published_event(message: dict[str, Any]) -> JobEvent | None:
    """The event a notification carries; None if it carries only its number (``"more"``: too
    large for a notification) or is not one of ours."""
    if message.get("more"):
        return None
    try:
        return JobEvent(seq=message["seq"], type=message["type"], data=message["data"])
    except (KeyError, ValidationError):
        return None


async def _until_it_may_end(feed: Feed, timeout_s: float) -> None:
    """Until ``feed`` brings news that may end the job (``JobService.wait``), or ``timeout_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while await feed.wait(end - loop.time()):
        messages = feed.take()
        if messages is None:
            return
        for message in messages:
            event = published_event(message)
            if event is None or event.terminal:
                return
