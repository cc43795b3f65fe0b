"""The worker loop: pgqueuer hands us job ids, we run attempts, classify failures, drain.

- Delivery is pgqueuer's (at-least-once: a dead worker's entries are picked up again once
  their heartbeat is older than ``heartbeat_timeout_s``).
- Effects are ours: every write is fenced by the attempt number (see ``JobStore``).
- Cancel: a NOTIFY on ``ragserve_job_cancel`` cancels the local task within milliseconds.
- Drain (SIGTERM): stop taking jobs, give running ones ``drain_s``, then hand the rest back
  to the queue at once, with the attempt refunded, so another worker starts them immediately.
- Park: a model endpoint's circuit is open (``CircuitOpen``): the job goes back to the queue
  for the circuit's remaining open time, attempt refunded, instead of failing an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import asyncpg
from pgqueuer.errors import RetryRequested
from pgqueuer.models import Job as QueueEntry

from ragserve import __version__
from ragserve.db.pool import Database
from ragserve.errors import CircuitOpen, DatabaseError, RagserveError
from ragserve.jobs.housekeeping import Housekeeping
from ragserve.jobs.metrics import JobMetrics, Outcome
from ragserve.jobs.monitoring import BUILT_IN_QUEUES
from ragserve.jobs.notify import NotificationHub
from ragserve.jobs.presence import WorkerPresence
from ragserve.jobs.queue import CANCEL_CHANNEL, QueueConsumer, consumer
from ragserve.jobs.routing import queue_name
from ragserve.jobs.runner import AttemptReport, JobFenced, JobRunner
from ragserve.jobs.store import Attempt, JobStore, WorkerIdentity
from ragserve.kb.breaker import CircuitBreaker
from ragserve.settings import Settings

log = logging.getLogger(__name__)

StopReason = Literal["cancel", "hand_back"]
RECONNECT_MAX_S = 10.0  # longest pause between two tries to reach a lost database
PARK_MIN_S = 0.2  # a parked job comes back no sooner, so a busy probe is not polled hot


@dataclass
class RunningJob:
    attempt: Attempt
    task: asyncio.Task[AttemptReport]
    stop_reason: StopReason | None = field(default=None)


def worker_slots(settings: Settings) -> int:
    """Jobs one worker process runs at once (``RAGSERVE_WORKER_CONCURRENCY``, at least 2)."""
    return max(2, settings.worker_concurrency)


PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (
    TypeError,
    AttributeError,
    NameError,
    NotImplementedError,
    KeyError,
    IndexError,
)
"""Errors of the code itself: another attempt runs the same code on the same input and fails
the same way. ``ValueError`` is not among them: LangChain's ``OutputParserException`` and
``json.JSONDecodeError`` are ValueErrors, and a model's next answer may well parse."""


def is_transient(exc: BaseException) -> bool:
    """Could another attempt succeed? Typed errors say so; an app's exception can say so with
    ``ragserve_permanent = True`` (docs/APPS.md); programming errors cannot; the rest (timeouts,
    lost connections, and what we did not foresee) get the benefit of the doubt."""
    if isinstance(exc, RagserveError):
        return exc.retryable
    if getattr(exc, "ragserve_permanent", False) is True:
        return False
    return not isinstance(exc, PROGRAMMING_ERRORS)


def will_retry(attempt: Attempt, exc: BaseException) -> bool:
    return is_transient(exc) and attempt.number < attempt.max_attempts


def raised_at(exc: BaseException) -> list[str]:
    """The last frames of ``exc``'s traceback, one ``file:line in function`` each: enough to
    find the bug in the log, without a multi-line stack trace (which never reaches the API)."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    return [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames]


def describe(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, TimeoutError):
        return {"type": "JobTimeout", "message": "the attempt exceeded RAGSERVE_JOB_TIMEOUT_S"}
    return {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}


class Worker:
    def __init__(
        self,
        db: Database,
        jobs: JobStore,
        runner: JobRunner,
        settings: Settings,
        *,
        version: str = __version__,
        breakers: Sequence[CircuitBreaker] = (),
        queues: Sequence[str] = BUILT_IN_QUEUES,
    ) -> None:
        """``version``: what runs the attempts (``ragserve.jobs.version.pipeline_version``);
        ``breakers``: the circuits of this process's model endpoints (for readiness, metrics);
        ``queues``: the queues it serves (``AppRegistry.select_queues``), each on this
        worker's track (``ragserve.jobs.routing``).
        """
        self.db = db
        self.jobs = jobs
        self.runner = runner
        self.settings = settings
        self.identity = WorkerIdentity(str(uuid.uuid4()), version)
        self.breakers = list(breakers)
        self.metrics = JobMetrics(version, self.breakers)
        self.track = settings.worker_track
        self.queues = [queue_name(queue, self.track) for queue in queues]
        self.running: dict[str, RunningJob] = {}
        self.draining = asyncio.Event()
        self.consuming = False  # a queue manager is taking jobs (for readiness)
        self._qm: QueueConsumer | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Take and run jobs until ``drain`` is called; returns once all are settled.

        A lost queue connection (database restart, network cut) does not end the process:
        pgqueuer's manager dies with its connection, so we build a new one, with backoff,
        until the database answers again. Jobs in flight then finish or fail into a retry.
        """
        hub = NotificationHub(self.db, [CANCEL_CHANNEL])
        hub.on(CANCEL_CHANNEL, self._on_cancel)
        await hub.start()
        # Presence and retention run once per process, not once per queue connection.
        stop_chores = asyncio.Event()
        chores = asyncio.create_task(self._housekeeping().run(stop_chores), name="chores")
        failures = 0
        try:
            while not self.draining.is_set():
                started = time.monotonic()
                try:
                    await self._consume()
                except Exception as exc:
                    if time.monotonic() - started > RECONNECT_MAX_S:
                        failures = 0  # it ran for a while: a new outage, start over
                    failures += 1
                    delay = min(RECONNECT_MAX_S, 0.5 * 2.0 ** (failures - 1))
                    log.warning(
                        "worker lost the queue; reconnecting",
                        extra={"event": "worker.reconnect", "error": repr(exc), "delay_s": delay},
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.draining.wait(), delay)
        finally:
            stop_chores.set()
            await chores
            await hub.stop()
            log.info("worker stopped", extra={"event": "worker.stopped"})

    async def _consume(self) -> None:
        """One queue manager on one connection, until drained or the connection is lost."""
        # pgqueuer's psycopg driver shares one connection between LISTEN and its queries, and
        # its listener holds that connection for up to a second at a time, so every dequeue
        # could wait that long; asyncpg delivers notifications without blocking queries.
        conn = await asyncpg.connect(self.db.url, timeout=self.db.timeout_s)
        try:
            self._qm = consumer(conn)
            for queue in self.queues:
                self._qm.entrypoint(queue)(self._handle)
            concurrency = worker_slots(self.settings)
            if self.draining.is_set():
                return
            log.info(
                "worker started", extra={"event": "worker.started", "concurrency": concurrency}
            )
            heartbeat_timeout = self.settings.heartbeat_timeout_s
            self.consuming = True
            await self._qm.run(
                # Also how often a silent queue is polled for entries whose worker died:
                # a dead worker's job is retaken within heartbeat_timeout + this.
                dequeue_timeout=timedelta(seconds=min(5.0, heartbeat_timeout / 3)),
                batch_size=max(1, concurrency // 2),
                max_concurrent_tasks=concurrency,
                heartbeat_timeout=timedelta(seconds=heartbeat_timeout),
            )
        finally:
            self.consuming = False
            with contextlib.suppress(Exception):
                await conn.close(timeout=self.db.timeout_s)

    def _housekeeping(self) -> Housekeeping:
        presence = WorkerPresence(
            self.db,
            self.identity,
            self.queues,
            self.settings.worker_presence_s,
            concurrency=worker_slots(self.settings),
        )
        return Housekeeping(
            self.db,
            self.settings,
            presence,
            lambda: len(self.running),
            # Stable workers bring back canary entries that no live canary worker serves.
            return_orphans=self.track == "stable",
        )

    def drain(self) -> None:
        """Stop taking jobs; hand back whatever still runs after ``drain_s``."""
        if self.draining.is_set():
            return
        self.draining.set()
        log.info(
            "worker draining", extra={"event": "worker.draining", "running": len(self.running)}
        )
        if self._qm is not None:
            self._qm.shutdown.set()
        asyncio.get_running_loop().call_later(self.settings.drain_s, self._hand_back_all)

    def _hand_back_all(self) -> None:
        for job in list(self.running.values()):
            self._stop(job, "hand_back")

    def _on_cancel(self, job_id: str) -> None:
        if (job := self.running.get(job_id)) is not None:
            self._stop(job, "cancel")

    @staticmethod
    def _stop(job: RunningJob, reason: StopReason) -> None:
        if job.stop_reason is None:
            job.stop_reason = reason
            job.task.cancel()

    # -- one job ---------------------------------------------------------------------

    async def _handle(self, entry: QueueEntry) -> None:
        job_id = (entry.payload or b"").decode()
        try:
            attempt = await self.jobs.start_attempt(job_id, self.identity, entry.execute_after)
        except DatabaseError:
            raise RetryRequested(timedelta(seconds=1), reason="database unavailable") from None
        if attempt is None:
            return  # cancelled or finished while queued: nothing to do
        self.metrics.started(attempt.kind, attempt.waited_s)
        started = time.monotonic()
        ctx: dict[str, object] = {"job_id": job_id, "attempt": attempt.number}
        if attempt.app is not None:
            ctx["app"] = attempt.app
        if attempt.number > attempt.max_attempts:
            # Earlier attempts died without a word (their worker was killed): dead-letter.
            await self.jobs.fail(
                attempt,
                {
                    "type": "AttemptsExhausted",
                    "message": f"{attempt.number - 1} attempts ended without a result"
                    " (their workers stopped)",
                },
            )
            self.metrics.finished(attempt.kind, "failed", time.monotonic() - started)
            log.warning("job dead-lettered", extra={"event": "job.failed", **ctx})
            return
        log.info("job started", extra={"event": "job.started", **ctx})
        task = asyncio.create_task(self._bounded(attempt))
        running = RunningJob(attempt, task)
        self.running[job_id] = running
        outcome: Outcome = "lost"
        first_token_s: float | None = None
        try:
            report = await task
        except asyncio.CancelledError:
            if running.stop_reason is None:
                raise  # we ourselves are being cancelled
            outcome = "cancelled" if running.stop_reason == "cancel" else "handed_back"
            await self._stopped(running)
        except JobFenced as exc:
            log.info("job fenced", extra={"event": "job.fenced", **ctx, "reason": str(exc)})
        except CircuitOpen as exc:
            outcome = "parked"
            await self._park(attempt, exc)
        except Exception as exc:
            outcome = "retried" if will_retry(attempt, exc) else "failed"
            await self._failed(attempt, exc)
        else:
            outcome, first_token_s = report.status, report.first_token_s
            log.info(f"job {outcome}", extra={"event": f"job.{outcome}", **ctx})
        finally:
            self.running.pop(job_id, None)
            self.metrics.finished(attempt.kind, outcome, time.monotonic() - started, first_token_s)

    async def _bounded(self, attempt: Attempt) -> AttemptReport:
        async with asyncio.timeout(self.settings.job_timeout_s):
            return await self.runner.run(attempt)

    async def _stopped(self, running: RunningJob) -> None:
        ctx = {"job_id": running.attempt.job_id, "attempt": running.attempt.number}
        if running.stop_reason == "cancel":
            log.info("job stopped: cancelled", extra={"event": "job.cancelled", **ctx})
            return
        if await self.jobs.requeue(running.attempt, None, refund=True):
            log.info("job handed back", extra={"event": "job.handed_back", **ctx})
            raise RetryRequested(timedelta(0), reason="worker draining")

    async def _park(self, attempt: Attempt, exc: CircuitOpen) -> None:
        """Back to the queue until the circuit may let a probe through; attempt refunded."""
        delay = max(PARK_MIN_S, exc.retry_after_s)
        ctx = {"job_id": attempt.job_id, "attempt": attempt.number, "provider": exc.provider}
        try:
            parked = await self.jobs.requeue(attempt, None, refund=True)
        except DatabaseError:
            raise RetryRequested(timedelta(seconds=delay), reason="database unavailable") from None
        if parked:
            log.info("job parked", extra={"event": "job.parked", **ctx, "delay_s": round(delay, 3)})
            raise RetryRequested(timedelta(seconds=delay), reason=str(exc))

    async def _failed(self, attempt: Attempt, exc: Exception) -> None:
        error = describe(exc)
        ctx = {"job_id": attempt.job_id, "attempt": attempt.number, "error": error}
        if not isinstance(exc, RagserveError):  # an app's own exception: where it was raised
            ctx["raised_at"] = raised_at(exc)
        if will_retry(attempt, exc):
            delay = self._backoff(attempt.number)
            try:
                requeued = await self.jobs.requeue(attempt, error)
            except DatabaseError:
                # The database is gone: leave the job as it is and have the queue run it
                # again (or, if the queue is gone too, its heartbeat expire).
                raise RetryRequested(
                    timedelta(seconds=delay), reason="database unavailable"
                ) from None
            if requeued:
                log.warning(
                    "job will retry",
                    extra={"event": "job.retry", **ctx, "delay_s": round(delay, 3)},
                )
                raise RetryRequested(timedelta(seconds=delay), reason=error["message"])
            return
        if await self.jobs.fail(attempt, error):
            log.warning("job failed", extra={"event": "job.failed", **ctx})

    def _backoff(self, attempt: int) -> float:
        """Exponential with full jitter around the doubled base, capped at a minute."""
        base = self.settings.retry_base_s * 2.0 ** (attempt - 1)
        return min(60.0, base * random.uniform(0.5, 1.5))
