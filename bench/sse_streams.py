"""SSE streams: the API process's CPU per answer job with a few event streams open, and with
1,000 open at once (issue 10: "1,000 concurrent streams on one API process without raising its
CPU per job by more than 20 %").

Starts the mock LLM (``bench/mock_llm.py``), the mock embeddings server of
``bench/concurrency.py``, one ``ragserve api`` and ``--workers`` ``ragserve worker`` processes on
a fresh embedded PostgreSQL, ingests the benchmark collection and warms up. Then two workloads
of distinct questions, each job submitted and followed to its ``done`` event over
``GET /v1/jobs/{id}/events`` as ``ragserve ask`` does (``bench/peers.py``'s ``ask_ragserve``:
``503`` retried after ``Retry-After``, a cut stream resumed with ``Last-Event-ID``), by a
client in a process of its own (``--clients`` processes):

- **few**: ``--few-n`` jobs, ``--few`` at a time (a new one starts when one ends): at most
  ``--few`` streams open, each getting its job's events live;
- **many**: ``--n`` jobs submitted at ``--rate`` per second (100; ``0``: all at once), each
  followed by its own stream from its submission on, **with the workers paused** (SIGSTOP)
  until 5 s after the last submission: every stream is open (the report gives the peak)
  before any job runs; then the workers run ``workers x worker-concurrency`` jobs at a time,
  and each stream gets its job's events live, like clients queued behind a burst. The rate
  keeps ingress out of the figure: 1,000 ``POST /v1/jobs`` at once, or even at 100/s while
  the workers compete for the CPU, overflowed the API's database pool
  (``RAGSERVE_DB_POOL_SIZE`` 10, 3 s timeout) on this loaded machine (load 13), and the
  retried 503 answers then cost more than the streams (measured: 2,600-4,800 retries, API
  15.6-16.5 ms/job against 9.9 for 'few').

**CPU per job** (psutil, user + system; ``bench/job_cost.py``'s ``Run``): the API process's
CPU over the workload minus its idle rate (measured just before, ``--idle`` s), divided by the
jobs. It covers the submissions and the streams; the client's CPU is not in it. The workers'
and PostgreSQL's are reported too. The goal is the ratio many / few of the API's CPU per job:
at most 1.2.

Run (about 3 minutes)::

    python bench/sse_streams.py                  # --n 1000 --few-n 250 --few 25
    python bench/sse_streams.py --json /tmp/sse.json --profile /tmp/sse-prof
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import psutil

from _common import bench_parser, finish_run, format_table, load_now, machine_info, stop_embedded
from concurrency import (
    CpuMeter,
    Service,
    client,
    cpu_seconds,
    data_folder,
    ingest_collection,
    postgres_processes,
    processes,
    profiled,
    scratch_dir,
    start_mock_embeddings,
    start_mock_llm,
    start_ragserve,
)
from job_cost import QUESTION, Run, mocked_settings
from peers import Job, ask_ragserve, start_ragserve_worker


@dataclass
class ClientResult:
    """What one client process saw."""

    jobs: int
    done: int
    retries: int
    peak_in_flight: int
    seconds: float
    errors: list[str]


async def follow_jobs(
    url: str, n: int, concurrency: int, tag: str, rate: float | None = None
) -> ClientResult:
    """``n`` questions, ``concurrency`` at a time, each followed to ``done``; with ``rate``,
    the i-th is submitted no earlier than i / ``rate`` seconds after the start."""
    gate = asyncio.Semaphore(concurrency)
    in_flight = peak = 0
    start = time.perf_counter()
    async with client(url, concurrency + 8) as http:

        async def one(i: int) -> Job:
            nonlocal in_flight, peak
            if rate is not None:
                await asyncio.sleep(start + i / rate - time.perf_counter())
            async with gate:
                in_flight += 1
                peak = max(peak, in_flight)
                job = Job(time.perf_counter())
                try:
                    await ask_ragserve(http, QUESTION.format(tag=tag, i=i), job)
                except Exception as exc:  # recorded, so that one failure does not hide the rest
                    job.error = f"{type(exc).__name__}: {exc}"
                finally:
                    in_flight -= 1
                return job

        jobs = await asyncio.gather(*(one(i) for i in range(n)))
    return ClientResult(
        jobs=n,
        done=sum(job.done is not None for job in jobs),
        retries=sum(job.retries for job in jobs),
        peak_in_flight=peak,
        seconds=round(time.perf_counter() - start, 2),
        errors=[job.error for job in jobs if job.error][:5],
    )


def client_process(
    url: str, n: int, concurrency: int, tag: str, rate: float | None
) -> ClientResult:
    """The entry point of a client process."""
    return asyncio.run(follow_jobs(url, n, concurrency, tag, rate))


def run_clients(
    args: argparse.Namespace,
    url: str,
    n: int,
    at_once: int,
    tag: str,
    rate: float | None = None,
) -> ClientResult:
    """``n`` jobs (``at_once`` at a time, submitted at ``rate`` per second) split over
    ``--clients`` processes; their sum."""
    k = args.clients
    shares = [n // k + (i < n % k) for i in range(k)]
    share_rate = rate / k if rate else None
    with ProcessPoolExecutor(k, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(client_process, url, share, max(1, at_once // k), f"{tag} c{i}", share_rate)
            for i, share in enumerate(shares)
        ]
        results = [f.result() for f in futures]
    return ClientResult(
        jobs=sum(r.jobs for r in results),
        done=sum(r.done for r in results),
        retries=sum(r.retries for r in results),
        peak_in_flight=sum(r.peak_in_flight for r in results),
        seconds=max(r.seconds for r in results),
        errors=[e for r in results for e in r.errors][:5],
    )


SETTLE_S = 5.0
"""After the last submission of 'many', how long the workers stay paused (streams opening)."""


@contextmanager
def paused(
    workers: Sequence[Service], seconds: float | None, on_resume: Callable[[], None] = lambda: None
) -> Iterator[None]:
    """The workers stopped (SIGSTOP) for the first ``seconds`` of the block (None: not at
    all), so that every job of 'many' is submitted, and its stream open, before any runs;
    ``on_resume`` is called just before they go on."""
    if seconds is None:
        yield
        return
    for worker in workers:
        os.kill(worker.pid, signal.SIGSTOP)

    def resume() -> None:
        on_resume()
        for worker in workers:
            os.kill(worker.pid, signal.SIGCONT)

    timer = threading.Timer(seconds, resume)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        for worker in workers:
            os.kill(worker.pid, signal.SIGCONT)


class PhaseClock:
    """The API process's CPU seconds at the phases of 'many': the submissions (and their
    streams opening), the wait with every stream open and the workers paused (keep-alives),
    and the jobs running. Each phase's CPU minus the idle rate over its duration."""

    def __init__(self, pid: int, idle_cpu_per_s: float) -> None:
        self.process = [psutil.Process(pid)]
        self.idle_cpu_per_s = idle_cpu_per_s
        self.marks: list[tuple[str, float, float]] = []

    def mark(self, phase: str) -> None:
        """The end of ``phase`` (the first mark is the start)."""
        self.marks.append((phase, time.perf_counter(), cpu_seconds(self.process)))

    def at(self, phase: str, delay_s: float) -> threading.Timer:
        timer = threading.Timer(delay_s, self.mark, (phase,))
        timer.start()
        return timer

    def phases(self) -> dict[str, dict[str, float]]:
        """``phase -> {"s": wall seconds, "api_cpu_s": CPU above idle}``."""
        out = {}
        for (_, t0, c0), (phase, t1, c1) in itertools.pairwise(self.marks):
            busy = c1 - c0 - self.idle_cpu_per_s * (t1 - t0)
            out[phase] = {"s": round(t1 - t0, 2), "api_cpu_s": round(busy, 3)}
        return out


@dataclass
class Workload:
    name: str
    streams: int
    run: Run
    client: ClientResult
    phases: dict[str, dict[str, float]] = field(default_factory=dict)


def measure(
    args: argparse.Namespace,
    name: str,
    n: int,
    at_once: int,
    api: Service,
    workers: Sequence[Service],
    data_dir: Path,
    rate: float | None = None,
) -> Workload:
    meter = CpuMeter(
        {
            "api": processes(api.pid),
            "worker": processes(*(w.pid for w in workers)),
            "postgres": lambda: postgres_processes(data_dir),
        }
    )
    meter.start()
    time.sleep(args.idle)
    idle = meter.stop()
    load = load_now()
    clock = PhaseClock(api.pid, idle["api"] / args.idle)
    meter.start()
    start = time.perf_counter()
    clock.mark("start")
    submitting = clock.at("submitting", n / rate) if rate else None
    with (
        profiled(api.pid, args.profile, f"api-{name}.txt", top=25),
        paused(
            workers, (n / rate + SETTLE_S) if rate else None, lambda: clock.mark("streams open")
        ),
    ):
        result = run_clients(args, api.url, n, at_once, name, rate)
    seconds = time.perf_counter() - start
    clock.mark("running")
    if submitting is not None:
        submitting.cancel()
    run = Run(n, round(seconds, 3), args.idle, meter.stop(), idle, result.retries, load)
    return Workload(name, at_once, run, result, clock.phases() if rate else {})


def report(args: argparse.Namespace, workloads: Sequence[Workload]) -> str:
    lines = [
        f"ragserve api + {args.workers} worker(s) (concurrency {args.worker_concurrency} each),"
        f" mock LLM ttft {args.ttft} s + {args.tps} tok/s, mock embeddings server;"
        f" {args.clients} client process(es); each job followed over its own event stream;"
        f" 'many' submitted at {args.rate or 'once'}{' /s' if args.rate else ''}, workers"
        f" paused until {SETTLE_S:g} s after the last",
        "",
    ]
    rows = [
        [
            w.name,
            w.run.n,
            w.client.done,
            w.client.peak_in_flight,
            w.run.seconds,
            w.run.cpu_ms_per_job("api"),
            w.run.cpu_ms_per_job("worker"),
            w.run.cpu_ms_per_job("postgres"),
            w.client.retries,
            w.run.load,
        ]
        for w in workloads
    ]
    headers = ["workload", "jobs", "done", "peak streams open", "s", "API ms/job"]
    headers += ["workers ms/job", "PostgreSQL ms/job", "client retries", "load"]
    lines.append(format_table(headers, rows))
    by_name = {w.name: w for w in workloads}
    if {"few", "many"} <= by_name.keys():
        few = by_name["few"].run.cpu_ms_per_job("api")
        many = by_name["many"].run.cpu_ms_per_job("api")
        lines += ["", f"API CPU per job, many / few: {many / few:.2f} (goal: <= 1.20)"]
    for w in workloads:
        if w.phases:
            parts = ", ".join(
                f"{phase} {p['s']:g} s: {p['api_cpu_s']:.2f} s"
                f" ({1000 * p['api_cpu_s'] / w.run.n:.2f} ms/job)"
                for phase, p in w.phases.items()
            )
            lines.append(f"{w.name}: API CPU above idle by phase: {parts}")
    for w in workloads:
        for error in w.client.errors:
            lines.append(f"{w.name}: error: {error}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=1000, help="jobs (and streams) of 'many'")
    parser.add_argument("--few-n", type=int, default=250, help="jobs of 'few'")
    parser.add_argument("--few", type=int, default=25, help="streams open at a time in 'few'")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="submissions per second in 'many' (0: at once)"
    )
    parser.add_argument("--workers", type=int, default=1, help="ragserve worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=100)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle baseline")
    parser.add_argument("--ttft", type=float, default=1.5)
    parser.add_argument("--tps", type=float, default=50.0)
    parser.add_argument("--only", choices=("few", "many"), help="run one workload only")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the API process")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write JSON ('-' = stdout)")
    args = parser.parse_args(argv)
    if min(args.n, args.few_n, args.few, args.workers, args.clients) < 1 or args.idle <= 0:
        parser.error("counts must be >= 1 and --idle > 0")
    args.rate = args.rate or None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    workloads: list[Workload] = []
    with scratch_dir("ragserve-bench-sse-", keep=args.keep) as scratch:
        llm = start_mock_llm(scratch, ttft=args.ttft, tps=args.tps)
        embeddings = start_mock_embeddings(scratch, 0.02)
        data_dir = data_folder(scratch, "data")
        settings = mocked_settings(llm.url, embeddings.url, args.worker_concurrency)
        api = start_ragserve("api", data_dir, scratch, **settings)
        workers = [
            start_ragserve_worker(data_dir, scratch, f"worker{i + 1}", **settings)
            for i in range(args.workers)
        ]
        try:
            asyncio.run(ingest_collection(api.url))
            run_clients(args, api.url, 10, 10, "warm-up")
            if args.only != "many":
                workloads.append(measure(args, "few", args.few_n, args.few, api, workers, data_dir))
            if args.only != "few":
                workloads.append(
                    measure(args, "many", args.n, args.n, api, workers, data_dir, args.rate)
                )
        finally:
            for service in (*workers, api, embeddings, llm):
                service.stop()
            stop_embedded(data_dir)
    finish_run(
        args,
        info,
        report(args, workloads),
        {"workloads": [asdict(w) for w in workloads]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
