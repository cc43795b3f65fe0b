"""Dispatch: how fast the queue hands a job to a worker, and how many jobs a worker can take.

Two measurements of the queue + worker machinery (pgqueuer on PostgreSQL, ``Worker``), with
jobs that do nothing, so that retrieval and the LLM do not hide it. A no-op job is an answer
job run by a ``JobRunner`` whose ``run()`` only stores an empty result (``jobs.succeed``,
fenced like a real one); everything else (dequeue, ``start_attempt``, events, pgqueuer's
acknowledgements and heartbeats, JSON logs) is the real worker's.

1. **Submit-to-running latency**, idle worker: ``ragserve api`` (embedded PostgreSQL) and a
   no-op worker process (this script with ``--noop-worker``) share one data dir; the client
   submits ``--latency-n`` distinct questions one at a time, ``--rate`` per second, through
   ``POST /v1/jobs``. Per job: ``created_at -> started_at`` from the job row, and client-side
   ``POST`` sent -> first ``status: running`` event received (the event stream is opened
   right after the ``202``). ``created_at -> started_at`` is also split at pgqueuer's pick
   (the dequeue statement's start, from pgqueuer's log): before it the submission's commit,
   its NOTIFY and the worker's wake-up; after it the dequeue, the dispatch to the job's
   task and ``start_attempt``. ``--warm-up`` jobs run first (default 100): each of the
   worker's pooled connections prepares a statement after 5 uses, and PostgreSQL plans a
   prepared statement anew for its first 5 executions, so the first ~100 jobs of a fresh
   worker pay 0.5-1 ms more (measured: docs/PERFORMANCE.md).
2. **No-op jobs per second** of one worker process: ``--drain-n`` jobs are enqueued in big
   transactions (``JobStore.insert`` + ``queue.enqueue``: the rows a submission writes), then
   a ``Worker`` is started in this process and timed from its start, and from its first job,
   to the last job's committed result, for each ``--concurrency``. The CPU time of this
   process and of PostgreSQL per job is shown too: on a shared machine it is steadier than
   jobs/s, and ``1000 / (worker ms per job)`` is what one fully available core could drain.

Run (about 2 minutes)::

    python bench/dispatch.py
    python bench/dispatch.py --latency-n 200 --rate 10 --drain-n 2000 --concurrency 32
    python bench/dispatch.py --skip-latency --pool-size 40   # a bigger DB pool for the worker
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pgqueuer.domain.settings import db_settings

from _common import (
    add_run_args,
    bench_parser,
    best_and_median,
    finish_run,
    format_table,
    load_now,
    machine_info,
    stop_embedded,
)
from concurrency import (
    CpuMeter,
    JobTiming,
    Service,
    child_env,
    client,
    data_folder,
    fill_rows,
    postgres_processes,
    processes,
    profiled,
    scratch_dir,
    spawn,
    sse_events,
    start_ragserve,
)
from load_baselines import percentile
from ragserve.db.pool import Database
from ragserve.jobs import queue
from ragserve.jobs.cache import stable_hash
from ragserve.jobs.runner import AttemptReport, JobRunner
from ragserve.jobs.store import Attempt, JobStore, NewJob
from ragserve.jobs.worker import Worker
from ragserve.logs import configure_logging
from ragserve.settings import Settings

COLLECTION = "bench"
T = TypeVar("T")


# --------------------------------------------------------------------------- the no-op worker


class NoOpRunner(JobRunner):
    """A runner whose jobs only store an empty answer; counts them, notes first and last."""

    def __init__(self, jobs: JobStore, expected: int = 0) -> None:  # no pipeline, no KB
        self.jobs = jobs
        self.expected = expected
        self.done = 0
        self.first_start: float | None = None
        self.last_done: float | None = None
        self.all_done = asyncio.Event()

    async def run(self, attempt: Attempt) -> AttemptReport:
        if self.first_start is None:
            self.first_start = time.perf_counter()
        await self.jobs.succeed(attempt, {"answer": ""})
        self.done += 1
        if self.done == self.expected:
            self.last_done = time.perf_counter()
            self.all_done.set()
        return AttemptReport("succeeded")


def worker_settings(data_dir: Path, concurrency: int, pool_size: int) -> Settings:
    return Settings(
        data_dir=data_dir, worker_concurrency=concurrency, drain_s=1, db_pool_size=pool_size
    )


def log_like_a_worker(path: Path | None) -> None:
    """ragserve's JSON logs (INFO: a line per job event), as ``ragserve worker`` writes them;
    to ``path`` instead of stderr when given."""
    configure_logging()
    if path is not None:
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(path.open("a", encoding="utf-8"))


def run_like_a_worker(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed, as ``ragserve worker`` does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def serve_noop_worker(settings: Settings) -> None:
    """``--noop-worker``: a worker process with the no-op runner, until SIGTERM."""
    db = await Database.from_settings(settings)
    await db.open()
    jobs = JobStore(db)
    worker = Worker(db, jobs, NoOpRunner(jobs), settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.drain)
    try:
        await worker.run()
    finally:
        await db.close()


def start_noop_worker(args: argparse.Namespace, data_dir: Path, log_dir: Path) -> Service:
    command = [
        sys.executable,
        __file__,
        "--noop-worker",
        "--data-dir",
        str(data_dir),
        "--concurrency",
        str(args.concurrency[0]),
        "--pool-size",
        str(args.pool_size),
    ]
    return spawn("noop-worker", command, child_env(), log_dir, "")


# --------------------------------------------------------------------------- 1. latency


@dataclass
class LatencyResult:
    n: int
    rate_per_s: float
    created_to_started_p50_ms: float
    created_to_started_p99_ms: float
    created_to_started_max_ms: float
    submit_to_running_p50_ms: float
    submit_to_running_p99_ms: float
    submit_to_running_max_ms: float
    load_before: str
    load_after: str
    created_to_picked_p50_ms: float | None = None
    created_to_picked_p99_ms: float | None = None
    picked_to_started_p50_ms: float | None = None
    picked_to_started_p99_ms: float | None = None


async def until_running(http: httpx.AsyncClient, query: str) -> JobTiming:
    """Submit one question; return once its event stream says ``running``."""
    submitted = time.perf_counter()
    response = await http.post("/v1/jobs", json={"query": query, "collection": COLLECTION})
    response.raise_for_status()
    timing = JobTiming(response.json()["job_id"], submitted, time.perf_counter())
    async with http.stream("GET", f"/v1/jobs/{timing.job_id}/events") as events:
        async for kind, data in sse_events(events):
            if kind == "status" and data.get("status") == "running":
                timing.running = time.perf_counter()
                break
            if kind in ("done", "error"):
                break
    if timing.running is None:
        raise RuntimeError(f"job {timing.job_id} never reported running")
    return timing


async def paced_submissions(url: str, n: int, rate: float, tag: str) -> list[JobTiming]:
    """``n`` questions started ``1/rate`` s apart, each followed until it runs."""
    async with client(url, 64) as http:
        tasks = []
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            query = f"How long is the parental leave? ({tag}, request {i})"
            tasks.append(asyncio.create_task(until_running(http, query)))
        timings = await asyncio.gather(*tasks)
        await fill_rows(http, timings)
    return list(timings)


PICKED_AT = """
SELECT j.id::text AS job_id, min(picked.created) AS picked_at
FROM jobs j
JOIN {log} queued ON queued.status = 'queued' AND queued.created = j.created_at
JOIN {log} picked ON picked.status = 'picked' AND picked.job_id = queued.job_id
WHERE j.id = ANY(%s::uuid[])
GROUP BY j.id
"""
"""When pgqueuer's dequeue took each job (its ``picked`` log line: the dequeue statement's
``now()``). The log keys lines by queue entry, which the job row does not store; the entry's
``queued`` line has the submission statement's ``now()``, i.e. the job's ``created_at``."""


async def picked_at(data_dir: Path, job_ids: Sequence[str]) -> dict[str, str]:
    """``job id -> picked`` (see ``PICKED_AT``, ISO 8601 as the API gives its instants), read
    from the latency run's database."""
    db = await Database.from_settings(Settings(data_dir=data_dir))
    await db.open()
    try:
        statement = PICKED_AT.format(log=db_settings().qualified.queue_table_log)
        async with db.connection() as conn:
            rows = await (await conn.execute(statement, (list(job_ids),))).fetchall()
    finally:
        await db.close()
    return {row["job_id"]: row["picked_at"].isoformat() for row in rows}


def latency_result(
    timings: Sequence[JobTiming],
    rate: float,
    load_before: str,
    picked: dict[str, str] | None = None,
) -> LatencyResult:
    """Percentiles of ``timings``; with ``picked`` (``picked_at``), created -> started split at
    the dequeue: the commit, NOTIFY and the worker's wake-up before it, the dispatch after."""
    server = [1000 * t.server_s("created_at", "started_at") for t in timings]
    client_ms = [1000 * (t.running - t.submitted) for t in timings if t.running is not None]

    def pct(values: list[float], q: float) -> float:
        return round(percentile(values, q), 1)

    split: dict[str, float] = {}
    if picked:
        timed = [t for t in timings if t.job_id in picked]
        for t in timed:
            t.row["picked_at"] = picked[t.job_id]
        before = [1000 * t.server_s("created_at", "picked_at") for t in timed]
        after = [1000 * t.server_s("picked_at", "started_at") for t in timed]
        split = {
            "created_to_picked_p50_ms": pct(before, 50),
            "created_to_picked_p99_ms": pct(before, 99),
            "picked_to_started_p50_ms": pct(after, 50),
            "picked_to_started_p99_ms": pct(after, 99),
        }

    return LatencyResult(
        n=len(timings),
        rate_per_s=rate,
        created_to_started_p50_ms=pct(server, 50),
        created_to_started_p99_ms=pct(server, 99),
        created_to_started_max_ms=round(max(server), 1),
        submit_to_running_p50_ms=pct(client_ms, 50),
        submit_to_running_p99_ms=pct(client_ms, 99),
        submit_to_running_max_ms=round(max(client_ms), 1),
        load_before=load_before,
        load_after=load_now(),
        **split,
    )


def measure_latency(args: argparse.Namespace, scratch: Path) -> list[LatencyResult]:
    data_dir = data_folder(scratch, "data-latency")
    api = start_ragserve("api", data_dir, scratch)
    worker = start_noop_worker(args, data_dir, scratch)
    results = []
    try:
        # The worker is up, and its pooled connections have prepared their statements (and
        # PostgreSQL planned them: the first uses of each on each connection plan it anew).
        asyncio.run(paced_submissions(api.url, args.warm_up, args.rate, "warm-up"))
        for run in range(args.repeat):
            load_before = load_now()
            with profiled(worker.pid, args.profile, f"noop-worker-latency-{run + 1}.txt"):
                timings = asyncio.run(
                    paced_submissions(api.url, args.latency_n, args.rate, f"run {run}")
                )
            picked = asyncio.run(picked_at(data_dir, [t.job_id for t in timings]))
            result = latency_result(timings, args.rate, load_before, picked)
            print(
                f"latency run {run + 1}: created->started p50/p99 "
                f"{result.created_to_started_p50_ms}/{result.created_to_started_p99_ms} ms "
                f"(created->picked {result.created_to_picked_p50_ms}/"
                f"{result.created_to_picked_p99_ms}, picked->started "
                f"{result.picked_to_started_p50_ms}/{result.picked_to_started_p99_ms}; "
                f"load {load_before})",
                file=sys.stderr,
            )
            results.append(result)
    finally:
        worker.stop()
        api.stop()
    return results


# --------------------------------------------------------------------------- 2. throughput


async def enqueue_jobs(db: Database, jobs: JobStore, n: int, tag: str, batch: int = 500) -> float:
    """``n`` queued answer jobs with their queue entries, ``batch`` per transaction; seconds."""
    start = time.perf_counter()
    for first in range(0, n, batch):
        async with db.transaction() as conn:
            for i in range(first, min(n, first + batch)):
                body = {"query": f"no-op {tag} {i}", "collection": COLLECTION, "top_k": 4}
                row = await jobs.insert(
                    conn,
                    NewJob(
                        kind="answer",
                        collection=COLLECTION,
                        query=body["query"],
                        request=body,
                        request_hash=stable_hash(body),
                        max_attempts=3,
                        cache_key=stable_hash([tag, i]),
                    ),
                )
                assert row is not None
                await queue.enqueue(conn, "answer", str(row["id"]))
    return time.perf_counter() - start


@dataclass
class DrainResult:
    concurrency: int
    pool_size: int
    n: int
    enqueue_s: float
    from_worker_start_s: float
    from_first_job_s: float
    jobs_per_s: float
    worker_cpu_ms_per_job: float
    postgres_cpu_ms_per_job: float
    load_before: str
    load_after: str


async def drain_once(db: Database, settings: Settings, n: int, run: int) -> DrainResult:
    jobs = JobStore(db)
    enqueue_s = await enqueue_jobs(db, jobs, n, f"c{settings.worker_concurrency}-r{run}")
    runner = NoOpRunner(jobs, n)
    worker = Worker(db, jobs, runner, settings)
    meter = CpuMeter(
        {
            "worker": processes(os.getpid()),
            "postgres": lambda: postgres_processes(settings.data_dir),
        }
    )
    load_before = load_now()
    meter.start()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(runner.all_done.wait(), timeout=600)
        cpu = meter.stop()
    finally:
        worker.drain()
        await task
    assert runner.first_start is not None and runner.last_done is not None
    busy = runner.last_done - runner.first_start
    return DrainResult(
        concurrency=settings.worker_concurrency,
        pool_size=settings.db_pool_size,
        n=n,
        enqueue_s=round(enqueue_s, 2),
        from_worker_start_s=round(runner.last_done - started, 3),
        from_first_job_s=round(busy, 3),
        jobs_per_s=round(n / busy, 1),
        worker_cpu_ms_per_job=round(1000 * cpu["worker"] / n, 2),
        postgres_cpu_ms_per_job=round(1000 * cpu["postgres"] / n, 2),
        load_before=load_before,
        load_after=load_now(),
    )


async def measure_drain_async(args: argparse.Namespace, data_dir: Path) -> list[DrainResult]:
    results = []
    for concurrency in args.concurrency:
        settings = worker_settings(data_dir, concurrency, args.pool_size)
        db = await Database.from_settings(settings)
        await db.open()
        try:
            for run in range(args.repeat):
                with profiled(os.getpid(), args.profile, f"drain-c{concurrency}-{run + 1}.txt"):
                    result = await drain_once(db, settings, args.drain_n, run)
                print(
                    f"drain c={concurrency} run {run + 1}: {result.jobs_per_s} jobs/s "
                    f"(load {result.load_before})",
                    file=sys.stderr,
                )
                results.append(result)
        finally:
            await db.close()
    return results


def measure_drain(args: argparse.Namespace, scratch: Path) -> list[DrainResult]:
    data_dir = data_folder(scratch, "data-drain")
    log_like_a_worker(scratch / "drain-worker.log")
    try:
        return run_like_a_worker(measure_drain_async(args, data_dir))
    finally:
        stop_embedded(data_dir)


# --------------------------------------------------------------------------- report


def latency_table(latency: Sequence[LatencyResult]) -> str:
    rows = [
        [
            r.n,
            r.rate_per_s,
            f"{r.created_to_started_p50_ms:g} / {r.created_to_started_p99_ms:g} / "
            f"{r.created_to_started_max_ms:g}",
            f"{r.created_to_picked_p50_ms} / {r.created_to_picked_p99_ms}",
            f"{r.picked_to_started_p50_ms} / {r.picked_to_started_p99_ms}",
            f"{r.submit_to_running_p50_ms:g} / {r.submit_to_running_p99_ms:g} / "
            f"{r.submit_to_running_max_ms:g}",
            r.load_before,
        ]
        for r in latency
    ]
    return format_table(
        [
            "jobs",
            "per s",
            "created->started p50 / p99 / max ms",
            "of which created->picked p50 / p99",
            "picked->started p50 / p99",
            "client submit->running p50 / p99 / max ms",
            "load",
        ],
        rows,
    )


def drain_table(drains: Sequence[DrainResult]) -> str:
    rows = [
        [
            d.concurrency,
            d.pool_size,
            d.n,
            d.enqueue_s,
            d.from_worker_start_s,
            d.from_first_job_s,
            d.jobs_per_s,
            f"{d.worker_cpu_ms_per_job:g} / {d.postgres_cpu_ms_per_job:g}",
            d.load_before,
        ]
        for d in drains
    ]
    lines = [
        format_table(
            [
                "concurrency",
                "DB pool",
                "jobs",
                "enqueue s",
                "worker start -> last s",
                "first job -> last s",
                "jobs/s",
                "CPU ms per job: worker / PG",
                "load",
            ],
            rows,
        )
    ]
    for c in sorted({d.concurrency for d in drains}):
        rates = [d.jobs_per_s for d in drains if d.concurrency == c]
        lines.append(f"c={c}: jobs/s best / median {best_and_median(rates)}")
    return "\n".join(lines)


def report(latency: Sequence[LatencyResult], drains: Sequence[DrainResult]) -> str:
    lines = []
    if latency:
        lines += [
            "submit-to-running latency, idle no-op worker (ragserve api + worker process)",
            latency_table(latency),
            "",
        ]
    if drains:
        lines += ["no-op jobs drained by one worker process", drain_table(drains)]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--latency-n", type=int, default=500, help="jobs, one at a time")
    parser.add_argument("--rate", type=float, default=20.0, help="submissions per second")
    parser.add_argument("--drain-n", type=int, default=5000, help="no-op jobs to drain")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[32, 100],
        help="worker concurrency (the latency run uses the first)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=Settings().db_pool_size,
        help="DB connections of the worker process (RAGSERVE_DB_POOL_SIZE)",
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=100,
        help="jobs submitted before the latency runs (the worker's statements prepared)",
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-drain", action="store_true")
    add_run_args(parser, profiled="the worker")
    parser.add_argument("--noop-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.latency_n, args.drain_n, args.repeat, args.warm_up) < 1 or args.rate <= 0:
        parser.error("counts must be >= 1 and --rate > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.noop_worker:  # the worker process of the latency measurement
        log_like_a_worker(None)
        settings = worker_settings(args.data_dir, args.concurrency[0], args.pool_size)
        run_like_a_worker(serve_noop_worker(settings))
        return 0
    info = machine_info()
    with scratch_dir("ragserve-bench-dispatch-", keep=args.keep) as scratch:
        latency = [] if args.skip_latency else measure_latency(args, scratch)
        drains = [] if args.skip_drain else measure_drain(args, scratch)
    finish_run(
        args,
        info,
        report(latency, drains),
        {"latency": [asdict(r) for r in latency], "drain": [asdict(d) for d in drains]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
