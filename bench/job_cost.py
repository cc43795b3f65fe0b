"""Job cost: CPU milliseconds and database round trips per answer job, API and worker apart.

Starts the mock LLM (``bench/mock_llm.py``), the mock embeddings server of
``bench/concurrency.py`` (its own process, so the embedder's CPU is not counted), and
``ragserve api`` + one ``ragserve worker`` on a fresh embedded PostgreSQL; ingests the small
benchmark collection; warms up with ``--concurrency`` questions at once (so that the pools are
at their working size); then measures ``--n`` distinct questions sent together
(``--concurrency`` at a time), each followed to its ``done`` event as a client does (retrying
a ``503`` after its ``Retry-After``, as the bundled client does).

**CPU** (psutil, user + system) of the API process, the worker process and PostgreSQL over the
run, minus what the same processes spend idle for as long (measured just before: heartbeats,
queue polling, metrics), divided by the number of jobs. It includes the worker's HTTP
clients for the embeddings and LLM servers (request building, JSON and SSE parsing,
LangChain's callbacks); ``--profile`` shows their share. It does not include the embedder
or the LLM themselves.

**Round trips**: a second, identical run with PostgreSQL's ``log_statement = 'all'`` (set with
``ALTER SYSTEM`` + ``pg_reload_conf()``, reset afterwards; the bundled PostgreSQL has no
``pg_stat_statements``): every statement a client sends is one line of the server log
(``statement:`` for the simple protocol, ``execute`` for the extended one: psycopg,
asyncpg/pgqueuer), counted between two marker statements, minus the idle rate. ``BEGIN`` and
``COMMIT`` count, as they are round trips too. One caveat: statements sent in a pipeline
share one round trip but count separately. The table groups them by their first words.

``--profile DIR`` records the API and the worker with py-spy (``pip install py-spy``) during
the CPU run and prints their hottest functions.

Run (about a minute)::

    python bench/job_cost.py                       # --n 100 --concurrency 25
    python bench/job_cost.py --profile /tmp/job-cost-prof --json /tmp/job-cost.json
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from _common import (
    bench_parser,
    finish_run,
    format_table,
    load_now,
    machine_info,
    stop_embedded,
)
from concurrency import (
    CpuMeter,
    Service,
    client,
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
from peers import Job, ask_ragserve, start_ragserve_worker
from ragserve.db.embedded import start_embedded_server

QUESTION = "How many days a week may employees work remotely? ({tag}, request {i})"
# A statement as PostgreSQL logs it: "LOG:  statement: SQL" or "LOG:  execute NAME: SQL".
STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)$")
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d ")  # PostgreSQL's default log_line_prefix


@dataclass
class Run:
    """One measured run of ``n`` jobs."""

    n: int
    seconds: float
    idle_seconds: float
    cpu_s: dict[str, float]
    idle_cpu_s: dict[str, float]
    retries: int
    load: str

    def cpu_ms_per_job(self, group: str) -> float:
        """CPU of ``group`` per job, minus its idle rate over the run's duration."""
        idle = self.idle_cpu_s[group] * self.seconds / self.idle_seconds
        return round(1000 * (self.cpu_s[group] - idle) / self.n, 2)


@dataclass
class RoundTrips:
    n: int
    seconds: float
    statements: int
    idle_statements: int
    idle_seconds: float
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def per_job(self) -> float:
        idle = self.idle_statements * self.seconds / self.idle_seconds
        return round((self.statements - idle) / self.n, 1)


async def run_jobs(url: str, n: int, concurrency: int, tag: str) -> int:
    """``n`` questions, ``concurrency`` at a time, each followed to ``done``; the number of
    retries (``503`` answers, cut streams) the clients needed."""
    gate = asyncio.Semaphore(concurrency)
    async with client(url, 2 * concurrency + 8) as http:

        async def one(i: int) -> int:
            async with gate:
                job = Job(time.perf_counter())
                await ask_ragserve(http, QUESTION.format(tag=tag, i=i), job)
                return job.retries

        return sum(await asyncio.gather(*(one(i) for i in range(n))))


def measure_cpu(
    args: argparse.Namespace, api: Service, worker: Service, data_dir: Path, tag: str
) -> Run:
    meter = CpuMeter(
        {
            "api": processes(api.pid),
            "worker": processes(worker.pid),
            "postgres": lambda: postgres_processes(data_dir),
        }
    )
    meter.start()
    time.sleep(args.idle)
    idle = meter.stop()
    load = load_now()
    meter.start()
    start = time.perf_counter()
    with (
        profiled(api.pid, args.profile, f"api-{tag}.txt", top=25),
        profiled(worker.pid, args.profile, f"worker-{tag}.txt", top=25),
    ):
        retries = asyncio.run(run_jobs(api.url, args.n, args.concurrency, tag))
    seconds = time.perf_counter() - start
    return Run(args.n, round(seconds, 3), args.idle, meter.stop(), idle, retries, load)


# Where a sampled stack belongs: the first category (in this order) one of whose markers is in
# one of its frames. Specific parts first (a pool check inside an event write is a pool check).
CATEGORIES = (
    ("pool checkout check (empty query per checkout)", ("check_connection",)),
    ("token/event writes (EventWriter, append_event)", ("EventWriter.", "append_event")),
    ("event streams: re-reads (events_after)", ("events_after",)),
    ("event streams: the rest (JobService.events, SSE)", ("JobService.events", "api/sse.py")),
    ("submissions (POST /v1/jobs)", ("submit_job", "JobService.submit", "JobService._submit")),
    ("job reads (JobService.get)", ("JobService.get", "JobStore.get")),
    ("LLM client (OpenAI answerer: request, SSE parse)", ("rag/answerers/",)),
    ("embeddings client", ("kb/embeddings.py",)),
    # aiohttp sends a request body and reads responses in tasks and callbacks of its own,
    # outside the stacks of the LLM and embeddings clients above.
    ("model HTTP clients' own I/O (aiohttp)", ("aiohttp/",)),
    ("retrieval (search, collection lookup)", ("rag/retrieval.py", "kb/store.py")),
    ("job start/finish, cache (JobStore, runner)", ("jobs/store.py", "jobs/runner.py")),
    ("queue (pgqueuer, asyncpg)", ("pgqueuer/", "asyncpg/")),
    ("HTTP server (uvicorn, starlette, FastAPI, metrics)", ("uvicorn/", "starlette/", "fastapi/")),
    ("logging", ("logging/", "ragserve/logs.py")),
)


def profile_categories(path: Path) -> dict[str, float]:
    """Share of a raw py-spy profile's samples in each of ``CATEGORIES`` (and "other")."""
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        name = next((name for name, marks in CATEGORIES if any(m in stack for m in marks)), "other")
        counts[name] += int(count)
    total = sum(counts.values()) or 1
    return {name: round(100 * n / total, 1) for name, n in counts.most_common()}


def statement_kind(sql: str) -> str:
    """The first words of a statement, enough to tell them apart in a table."""
    words = re.sub(r"\s+", " ", sql).strip().split(" ")
    # psycopg_pool's check_connection (ragserve's pool checks every checkout) sends "".
    return " ".join(words[:4])[:60] or "(empty query: pool checkout check)"


def logged_statements(log: Path, start_marker: str, end_marker: str) -> list[str]:
    """The statements logged between the two markers; a statement's SQL may go on over the
    next lines (those without the log line prefix)."""
    lines = log.read_text(errors="replace").splitlines()
    start = next(i for i, line in enumerate(lines) if start_marker in line)
    end = next(i for i, line in enumerate(lines) if end_marker in line and i > start)
    out: list[str] = []
    current: list[str] | None = None
    for line in lines[start + 1 : end]:
        if LOG_PREFIX.match(line):
            if current is not None:
                out.append(" ".join(current))
            match = STATEMENT.search(line)
            current = [match.group(1)] if match else None
        elif current is not None:
            current.append(line)
    if current is not None:
        out.append(" ".join(current))
    return out


def count_round_trips(args: argparse.Namespace, api: Service, data_dir: Path) -> RoundTrips:
    url = start_embedded_server(data_dir)
    log = data_dir / "pgdata" / "log"
    marks = [f"job_cost_{uuid.uuid4().hex}" for _ in range(4)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        try:
            conn.execute(f"SELECT '{marks[0]}'")
            time.sleep(args.idle)
            conn.execute(f"SELECT '{marks[1]}'")
            conn.execute(f"SELECT '{marks[2]}'")
            start = time.perf_counter()
            asyncio.run(run_jobs(api.url, args.n, args.concurrency, "round trips"))
            seconds = time.perf_counter() - start
            conn.execute(f"SELECT '{marks[3]}'")
        finally:
            conn.execute("ALTER SYSTEM RESET log_statement")
            conn.execute("SELECT pg_reload_conf()")
    idle = logged_statements(log, marks[0], marks[1])
    busy = logged_statements(log, marks[2], marks[3])
    kinds = Counter(statement_kind(s) for s in busy)
    return RoundTrips(
        n=args.n,
        seconds=round(seconds, 3),
        statements=len(busy),
        idle_statements=len(idle),
        idle_seconds=args.idle,
        by_kind=dict(kinds.most_common()),
    )


def profile_table(profiles: dict[str, dict[str, float]]) -> str:
    names = list(dict.fromkeys(name for shares in profiles.values() for name in shares))
    rows = [[name, *(shares.get(name, 0.0) for shares in profiles.values())] for name in names]
    return format_table(["where (py-spy samples, %)", *profiles], rows)


def report(args: argparse.Namespace, runs: Sequence[Run], trips: RoundTrips | None) -> str:
    lines = [
        f"{args.n} answer jobs, {args.concurrency} at a time, each followed to its done event;"
        f" ragserve api + 1 worker (concurrency {args.worker_concurrency}), mock LLM"
        f" ttft {args.ttft} s + {args.tps} tok/s, mock embeddings server",
        "",
    ]
    rows = [
        [
            i + 1,
            r.n,
            r.seconds,
            r.cpu_ms_per_job("api"),
            r.cpu_ms_per_job("worker"),
            round(r.cpu_ms_per_job("api") + r.cpu_ms_per_job("worker"), 2),
            r.cpu_ms_per_job("postgres"),
            r.retries,
            r.load,
        ]
        for i, r in enumerate(runs)
    ]
    headers = ["run", "jobs", "s", "API ms/job", "worker ms/job", "API + worker ms/job"]
    headers += ["PostgreSQL ms/job", "client retries (503)", "load"]
    lines.append(format_table(headers, rows))
    if args.profile:
        profiles = {
            f"{proc} {run}": profile_categories(args.profile / f"{proc}-run{run}.txt")
            for proc in ("api", "worker")
            for run in range(1, len(runs) + 1)
            if (args.profile / f"{proc}-run{run}.txt").exists()
        }
        lines += ["", profile_table(profiles)]
    if trips is not None:
        lines += [
            "",
            f"database round trips per answer job: {trips.per_job} ({trips.statements}"
            f" statements for {trips.n} jobs in {trips.seconds:g} s; idle:"
            f" {trips.idle_statements} in {trips.idle_seconds:g} s)",
            "",
        ]
        rows2 = [[kind, count, round(count / trips.n, 2)] for kind, count in trips.by_kind.items()]
        lines.append(format_table(["statement (first words)", "count", "per job"], rows2))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=100, help="answer jobs per run")
    parser.add_argument("--concurrency", type=int, default=25, help="jobs sent at a time")
    parser.add_argument("--worker-concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2, help="CPU runs")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle baseline")
    parser.add_argument("--ttft", type=float, default=1.5)
    parser.add_argument("--tps", type=float, default=50.0)
    parser.add_argument("--skip-round-trips", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the API and worker")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write JSON ('-' = stdout)")
    args = parser.parse_args(argv)
    if min(args.n, args.concurrency, args.repeat) < 1 or args.idle <= 0:
        parser.error("--n, --concurrency, --repeat must be >= 1 and --idle > 0")
    return args


def mocked_settings(llm_url: str, embeddings_url: str, worker_concurrency: int) -> dict[str, str]:
    """ragserve's settings (``RAGSERVE_*`` without the prefix) for the mock LLM and the mock
    embeddings server at these URLs."""
    return {
        "worker_concurrency": str(worker_concurrency),
        "llm_base_url": f"{llm_url}/v1",
        "llm_model": "mock",
        "embeddings": "openai",
        "embeddings_base_url": f"{embeddings_url}/v1",
        "embeddings_model": "mock-embeddings",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    with scratch_dir("ragserve-bench-job-cost-", keep=args.keep) as scratch:
        llm = start_mock_llm(scratch, ttft=args.ttft, tps=args.tps)
        embeddings = start_mock_embeddings(scratch, 0.02)
        data_dir = data_folder(scratch, "data")
        settings = mocked_settings(llm.url, embeddings.url, args.worker_concurrency)
        api = start_ragserve("api", data_dir, scratch, **settings)
        worker = start_ragserve_worker(data_dir, scratch, "worker", **settings)
        try:
            asyncio.run(ingest_collection(api.url))
            # As many at once as the runs: both processes' pools grow to their working size
            # here, not during the first measured run.
            asyncio.run(run_jobs(api.url, args.concurrency, args.concurrency, "warm-up"))
            runs = [
                measure_cpu(args, api, worker, data_dir, f"run{i + 1}") for i in range(args.repeat)
            ]
            trips = None if args.skip_round_trips else count_round_trips(args, api, data_dir)
        finally:
            for service in (worker, api, embeddings, llm):
                service.stop()
            stop_embedded(data_dir)  # this process joined it to count statements
    finish_run(
        args,
        info,
        report(args, runs, trips),
        {"runs": [asdict(r) for r in runs], "round_trips": asdict(trips) if trips else None},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
