"""Peers: the same workloads against ragserve and the stacks users would build instead.

One run, one machine, one mock LLM (``bench/mock_llm.py``, fixed delay: ttft 1.5 s + 27 tokens
at 50 tok/s by default, ~2.1 s per answer) and one embedder (the OpenAI-compatible mock
embeddings server of ``bench/concurrency.py``, 20 ms per request, in its own process, as an
embeddings server on another machine would be) for every system:

``ragserve-serve``
    ``ragserve serve`` (API + in-process worker), embedded PostgreSQL.
``ragserve-split``
    ``ragserve api`` + 2 ``ragserve worker`` on one embedded PostgreSQL.
``celery`` / ``celery-acks-late``
    ``bench/peers_celery``: FastAPI (uvicorn, 1 process) returning a Celery task id, 2 Celery
    workers (``--pool threads``), Redis (Debian ``redis-server``) as broker and result backend,
    PostgreSQL + pgvector for the passages; the client polls the task's status. ``celery`` runs
    Celery's defaults, ``celery-acks-late`` the settings Celery's docs give for tasks that must
    survive a lost worker (``task_acks_late``, ``task_reject_on_worker_lost``,
    ``worker_prefetch_multiplier=1``, a ``visibility_timeout``).
``proto-serial`` / ``proto-pool4``
    The FastAPI prototypes of ``bench/prototype_baselines.py`` (one blocking LLM call per
    request, under a lock / on 4 threads; no retrieval).

Every worker process runs ``--concurrency`` jobs at once (ragserve's
``RAGSERVE_WORKER_CONCURRENCY``, Celery's thread count). Workloads (``--workloads``):

``burst``
    ``--n`` questions at once; makespan and client latency p50/p99 (submit -> answer received:
    ragserve clients follow the job's event stream, Celery clients poll every ``--poll`` s,
    prototypes wait on the request). ``proto-serial`` is measured on ``--serial-n`` questions
    and extrapolated linearly (``*``).
``poisson``
    Poisson arrivals for ``--duration`` s at each fraction of ``--loads`` of the system's
    capacity, taken as the completion rate of its own burst (n / makespan); latency p50/p99 and
    queue wait (ragserve: ``created_at -> started_at``; Celery: submission -> the task's start).
``kill``
    ``--n`` questions at once on a system with two workers; the worker with the most
    connections open to the LLM (the busier one) is SIGKILLed ``--kill-after`` s later and
    not restarted. Jobs lost (not answered within
    ``--kill-timeout`` s) and time until every answered job was done.
``noop``
    ``--noop-n`` jobs that do nothing are queued through HTTP with no worker running, then one
    worker process drains them: jobs/s from the first start to the last finish (server clocks).
    ragserve: ``bench/dispatch.py``'s no-op worker (the real ``Worker``, a runner that stores an
    empty result); Celery: a task that returns at once.
``ingress``
    ``POST /v1/jobs`` req/s of one API process with no worker, loaded by ``wrk`` (every request
    a distinct question) for ``--ingress-duration`` s at each ``--connections`` value.

CPU time of each system's processes (and of its stores: PostgreSQL, Redis) is measured with
psutil for every workload: on a shared machine, CPU ms per job is steadier than wall time.
Prints one Markdown table per workload, writes charts with ``--charts DIR`` (matplotlib) and
everything measured with ``--json PATH``.

Run (15-20 minutes on 2 cores; ``--systems`` and ``--workloads`` pick parts)::

    python bench/peers.py --charts docs/img --json /tmp/peers.json
    python bench/peers.py --systems ragserve-split celery --workloads burst kill
    python bench/peers.py --duration 180          # Poisson phases of 3 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from httpx_sse import EventSource

from _common import bench_parser, finish_run, format_table, load_now, machine_info
from _common import stop_embedded as stop_embedded_server
from concurrency import (
    COLLECTION,
    HANDBOOK,
    OTHER_DOCS,
    CpuMeter,
    Service,
    child_env,
    client,
    data_folder,
    fill_rows,
    free_port,
    ingest_collection,
    mock_stats,
    postgres_processes,
    processes,
    reset_mock,
    scratch_dir,
    spawn,
    start_baseline,
    start_mock_embeddings,
    start_mock_llm,
    start_ragserve,
    wait_http,
)
from ingress import WRK_SCRIPT, run_wrk
from load_baselines import percentile

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
SYSTEMS = (
    "ragserve-serve",
    "ragserve-split",
    "celery",
    "celery-acks-late",
    "proto-serial",
    "proto-pool4",
)
WORKLOADS = ("burst", "poisson", "kill", "noop", "ingress")
# Which systems each workload applies to: a kill needs a second worker to take over; no-op
# jobs and ingress need a queue behind an API.
APPLIES = {
    "burst": set(SYSTEMS),
    "poisson": set(SYSTEMS),
    "kill": {"ragserve-split", "celery", "celery-acks-late"},
    "noop": {"ragserve-split", "celery", "celery-acks-late"},
    "ingress": {"ragserve-split", "celery"},
}
QUESTION = "How many days a week may employees work remotely? ({tag}, request {i})"


# --------------------------------------------------------------------------- systems


@dataclass
class Shared:
    """What every system uses: the mocks, the scratch folder, the arguments."""

    args: argparse.Namespace
    scratch: Path
    llm: Service
    embeddings: Service


@dataclass
class System:
    """A running system: where clients go, its processes (for CPU time and SIGKILL)."""

    name: str
    url: str
    apis: list[Service]
    workers: list[Service] = field(default_factory=list)
    others: list[Service] = field(default_factory=list)  # redis
    pg_dir: Path | None = None  # an embedded PostgreSQL folder
    redis_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # Celery: to start more workers later

    @property
    def kind(self) -> str:
        return self.name.split("-")[0]

    def meter(self, shared: Shared) -> CpuMeter:
        own = [s.pid for s in (*self.apis, *self.workers) if s.proc.poll() is None]
        pg_dir = self.pg_dir

        def stores() -> list[Any]:
            out = processes(*(s.pid for s in self.others))()
            return out + (postgres_processes(pg_dir) if pg_dir else [])

        return CpuMeter(
            {
                "system": processes(*own),
                "stores": stores,
                "mocks": processes(shared.llm.pid, shared.embeddings.pid),
            }
        )

    def stop(self) -> None:
        for service in [*self.workers, *self.apis, *self.others]:
            service.stop()
        if self.pg_dir is not None:
            stop_embedded_server(self.pg_dir)


def ragserve_settings(shared: Shared) -> dict[str, str]:
    return {
        "worker_concurrency": str(shared.args.concurrency),
        "llm_base_url": f"{shared.llm.url}/v1",
        "llm_model": "mock",
        "embeddings": "openai",
        "embeddings_base_url": f"{shared.embeddings.url}/v1",
        "embeddings_model": "mock-embeddings",
    }


def start_ragserve_worker(data_dir: Path, scratch: Path, name: str, **settings: str) -> Service:
    """``ragserve worker --health-port``, ready (its ``/readyz`` answers 200)."""
    port = free_port()
    env = child_env(
        RAGSERVE_DATA_DIR=str(data_dir),
        RAGSERVE_DRAIN_S="5",
        **{f"RAGSERVE_{k.upper()}": v for k, v in settings.items()},
    )
    args = [sys.executable, "-m", "ragserve", "worker", "--health-port", str(port)]
    args += ["--health-host", HOST]
    service = spawn(name, args, env, scratch, f"http://{HOST}:{port}")
    wait_http(service, "/readyz")
    return service


def wait_log(service: Service, marker: str, timeout: float = 120) -> Service:
    """Wait until ``marker`` is in the process's log (how Redis and Celery say they are ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            tail = service.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{tail}")
        if marker in service.log.read_text(errors="replace"):
            return service
        time.sleep(0.02)
    service.stop()
    raise RuntimeError(f"{service.name}: no {marker!r} after {timeout:g} s (log: {service.log})")


def start_noop_worker(data_dir: Path, scratch: Path, concurrency: int) -> Service:
    """``bench/dispatch.py --noop-worker``: the real worker with a runner that does nothing."""
    args = [sys.executable, str(BENCH / "dispatch.py"), "--noop-worker"]
    args += ["--data-dir", str(data_dir), "--concurrency", str(concurrency)]
    service = spawn(f"ragserve-noop-worker-{time.monotonic_ns()}", args, child_env(), scratch, "")
    return wait_log(service, '"worker.started"')


def start_ragserve_system(name: str, shared: Shared, workers: int) -> System:
    data_dir = data_folder(shared.scratch, f"data-{name}-{time.monotonic_ns()}")
    settings = ragserve_settings(shared)
    if name == "ragserve-serve":
        serve = start_ragserve("serve", data_dir, shared.scratch, name=name, **settings)
        system = System(name, serve.url, [serve], pg_dir=data_dir)
    else:
        api = start_ragserve("api", data_dir, shared.scratch, name=f"{name}-api", **settings)
        system = System(name, api.url, [api], pg_dir=data_dir)
        system.workers = [
            start_ragserve_worker(data_dir, shared.scratch, f"{name}-worker{i}", **settings)
            for i in range(workers)
        ]
    if name == "ragserve-serve" or workers:  # no-op and ingress runs need no passages
        asyncio.run(ingest_collection(system.url))
    return system


def start_redis(scratch: Path) -> Service:
    """Debian's ``redis-server`` with its built-in defaults (RDB snapshots, no AOF)."""
    redis = shutil.which("redis-server")
    if redis is None:
        raise RuntimeError("redis-server not found (Debian: apt-get install -y redis-server)")
    port = free_port()
    folder = scratch / f"redis-{port}"
    folder.mkdir()
    args = [redis, "--port", str(port), "--bind", HOST, "--dir", str(folder)]
    service = spawn(f"redis-{port}", args, child_env(), scratch, f"redis://{HOST}:{port}")
    return wait_log(service, "Ready to accept connections", 20)


def celery_env(system: System, shared: Shared, pg_url: str) -> dict[str, str]:
    args = shared.args
    return child_env(
        PYTHONPATH=os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]),
        PEERS_REDIS_URL=str(system.redis_url),
        PEERS_PG_URL=pg_url,
        PEERS_LLM_URL=f"{shared.llm.url}/v1",
        PEERS_EMBEDDINGS_URL=f"{shared.embeddings.url}/v1",
        PEERS_POOL_SIZE=str(min(args.concurrency, 20)),
        PEERS_ACKS_LATE="1" if system.name == "celery-acks-late" else "0",
        PEERS_VISIBILITY_TIMEOUT=str(args.visibility_timeout),
    )


def start_celery_worker(system: System, env: dict[str, str], scratch: Path, i: int) -> Service:
    """One Celery worker (threads pool), ready when its log says so."""
    name = f"{system.name}-worker{i}-{time.monotonic_ns()}"
    args = [sys.executable, "-m", "celery", "-A", "peers_celery.worker:celery_app", "worker"]
    args += ["--pool", "threads", "--concurrency", env["PEERS_CONCURRENCY"]]
    args += ["--loglevel", "INFO", "--hostname", f"{name}@%h"]
    service = spawn(name, args, env, scratch, "")
    return wait_log(service, " ready.")


def start_celery_system(name: str, shared: Shared, workers: int) -> System:
    from peers_celery.app import seed_corpus
    from ragserve.db.embedded import start_embedded_server

    pg_dir = data_folder(shared.scratch, f"data-{name}-{time.monotonic_ns()}")
    pg_url = start_embedded_server(pg_dir)
    docs = {"handbook.md": HANDBOOK, **OTHER_DOCS}
    seed_corpus(pg_url, f"{shared.embeddings.url}/v1", COLLECTION, docs)
    redis = start_redis(shared.scratch)
    system = System(name, "", [], others=[redis], pg_dir=pg_dir, redis_url=redis.url)
    env = system.env = celery_env(system, shared, pg_url)
    env["PEERS_CONCURRENCY"] = str(shared.args.concurrency)
    port = free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "peers_celery.app:create_api", "--factory"]
    uvicorn += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    api = spawn(f"{name}-api", uvicorn, env, shared.scratch, f"http://{HOST}:{port}")
    system.url, system.apis = api.url, [api]
    system.workers = [start_celery_worker(system, env, shared.scratch, i) for i in range(workers)]
    wait_http(api, "/healthz")
    return system


def start_system(name: str, shared: Shared, workers: int = 2) -> System:
    """``name`` running, with ``workers`` worker processes (queue-based systems)."""
    if name.startswith("ragserve"):
        return start_ragserve_system(name, shared, workers)
    if name.startswith("celery"):
        return start_celery_system(name, shared, workers)
    proto = start_baseline(shared.scratch, name.removeprefix("proto-"), f"{shared.llm.url}/v1")
    return System(name, proto.url, [proto])


@contextmanager
def running(name: str, shared: Shared, workers: int = 2) -> Iterator[System]:
    system = start_system(name, shared, workers)
    try:
        yield system
    finally:
        system.stop()


# --------------------------------------------------------------------------- one job


@dataclass
class Job:
    """One question as a client saw it (perf_counter seconds; ``queue_s`` from server clocks)."""

    submitted: float
    done: float | None = None
    job_id: str | None = None
    queue_s: float | None = None
    error: str | None = None
    retries: int = 0  # ragserve: 503s and cut streams retried, as the bundled client does

    @property
    def latency_s(self) -> float | None:
        return None if self.done is None else self.done - self.submitted


async def ask_celery(http: httpx.AsyncClient, query: str, poll_s: float, job: Job) -> None:
    """Submit, then poll the task's status until it has a result (what its clients do)."""
    wall = time.time()
    response = await http.post("/v1/jobs", json={"query": query, "collection": COLLECTION})
    response.raise_for_status()
    job.job_id = response.json()["job_id"]
    while True:
        await asyncio.sleep(poll_s)
        body = (await http.get(f"/v1/jobs/{job.job_id}")).json()
        if body["status"] == "succeeded":
            job.done = time.perf_counter()
            job.queue_s = body["result"]["started_at"] - wall
            return
        if body["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"task {job.job_id} {body['status']}: {body.get('error')}")


RETRYABLE = {502, 503, 504}


async def job_failed(http: httpx.AsyncClient, job_id: str) -> bool:
    """After an ``error`` event: is the job over, or will another attempt follow?"""
    response = await http.get(f"/v1/jobs/{job_id}")
    return response.status_code == 200 and response.json()["status"] in ("failed", "cancelled")


async def ask_ragserve(http: httpx.AsyncClient, query: str, job: Job) -> None:
    """Submit, then follow the job's events to ``done``, retrying as the bundled client does:
    a ``503`` (or a cut stream) is retried after ``Retry-After`` and the stream resumed with
    ``Last-Event-ID``. Each retry is counted in ``job.retries``."""
    body = {"query": query, "collection": COLLECTION}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    while True:
        response = await http.post("/v1/jobs", json=body, headers=key)
        if response.status_code not in RETRYABLE:
            break
        job.retries += 1
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    response.raise_for_status()
    job.job_id = response.json()["job_id"]
    last_id: str | None = None
    while job.done is None:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            async with http.stream(
                "GET", f"/v1/jobs/{job.job_id}/events", headers=headers
            ) as events:
                if events.status_code in RETRYABLE:
                    job.retries += 1
                    await asyncio.sleep(float(events.headers.get("Retry-After", "1")))
                    continue
                events.raise_for_status()
                async for event in EventSource(events).aiter_sse():
                    last_id = event.id or last_id
                    if event.event == "done":
                        job.done = time.perf_counter()
                        return
                    if event.event == "error" and await job_failed(http, job.job_id):
                        raise RuntimeError(f"job {job.job_id}: error {event.data}")
        except (httpx.TransportError, httpx.StreamError):
            pass  # a cut stream: resume
        job.retries += 1
        await asyncio.sleep(0.5)


async def ask(system: System, http: httpx.AsyncClient, query: str, poll_s: float) -> Job:
    """One question, start to answer, on any system; errors are recorded, not raised."""
    job = Job(time.perf_counter())
    try:
        if system.kind == "ragserve":
            await ask_ragserve(http, query, job)
        elif system.kind == "celery":
            await ask_celery(http, query, poll_s, job)
        else:
            response = await http.post("/ask", json={"question": query})
            response.raise_for_status()
            job.done = time.perf_counter()
    except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        job.error = f"{type(exc).__name__}: {exc}"
    return job


async def ask_within(
    system: System, http: httpx.AsyncClient, query: str, poll_s: float, timeout: float
) -> Job:
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(ask(system, http, query, poll_s), timeout)
    except TimeoutError:
        return Job(started, error=f"not answered within {timeout:g} s")


async def fill_queue_waits(system: System, http: httpx.AsyncClient, jobs: Sequence[Job]) -> None:
    """ragserve: ``created_at -> started_at`` of each answered job, from its row."""
    if system.kind != "ragserve":
        return
    from concurrency import JobTiming

    timings = [JobTiming(j.job_id, 0, 0) for j in jobs if j.job_id and j.done]
    await fill_rows(http, timings)
    by_id = {t.job_id: t.server_s("created_at", "started_at") for t in timings}
    for j in jobs:
        j.queue_s = by_id.get(j.job_id or "")


def http_client(system: System, connections: int) -> httpx.AsyncClient:
    return client(system.url, connections)


# --------------------------------------------------------------------------- workloads


def pct(values: Sequence[float], q: float) -> float:
    return round(percentile(values, q), 3) if values else math.nan


@dataclass
class BurstResult:
    system: str
    n: int
    answered: int
    single_s: float
    makespan_s: float
    extrapolated: bool
    p50_s: float
    p99_s: float
    latencies_s: list[float]
    cpu_s: dict[str, float]
    llm_max_in_flight: int
    retries: int
    load: str

    @property
    def capacity_per_s(self) -> float:
        return self.n / self.makespan_s


async def single_job(system: System, poll_s: float, runs: int) -> float:
    """Median of ``runs`` questions alone, after one that warms the system up."""
    out = []
    async with http_client(system, 4) as http:
        for i in range(runs + 1):
            job = await ask(system, http, QUESTION.format(tag="single", i=i), poll_s)
            if job.latency_s is None:
                raise RuntimeError(f"{system.name}: one question failed: {job.error}")
            out.append(job.latency_s)
    return statistics.median(out[1:])


async def burst_jobs(system: System, n: int, tag: str, poll_s: float, timeout: float) -> list[Job]:
    async with http_client(system, 2 * n + 8) as http:
        questions = [QUESTION.format(tag=tag, i=i) for i in range(n)]
        return list(
            await asyncio.gather(*(ask_within(system, http, q, poll_s, timeout) for q in questions))
        )


def run_burst(system: System, shared: Shared) -> BurstResult:
    args = shared.args
    single = asyncio.run(single_job(system, args.poll, args.single_runs))
    n = args.serial_n if system.name == "proto-serial" else args.n
    meter = system.meter(shared)
    reset_mock(shared.llm)
    load = load_now()
    meter.start()
    start = time.perf_counter()
    jobs = asyncio.run(burst_jobs(system, n, f"burst {system.name}", args.poll, args.job_timeout))
    cpu = meter.stop()
    done = [j.done for j in jobs if j.done is not None]
    latencies = [j.latency_s for j in jobs if j.latency_s is not None]
    makespan = (max(done) - start) if done else math.nan
    errors = [j.error for j in jobs if j.error]
    if errors:
        print(f"{system.name}: {len(errors)} failed, first: {errors[0]}", file=sys.stderr)
    scale = args.n / n  # proto-serial: extrapolated linearly
    return BurstResult(
        system=system.name,
        n=args.n,
        answered=len(done),
        single_s=round(single, 3),
        makespan_s=round(makespan * scale, 3),
        extrapolated=scale != 1,
        p50_s=pct(latencies, 50),
        p99_s=pct(latencies, 99),
        latencies_s=[round(x, 4) for x in latencies],
        cpu_s=cpu,
        llm_max_in_flight=int(mock_stats(shared.llm)["max_in_flight"]),
        retries=sum(j.retries for j in jobs),
        load=load,
    )


@dataclass
class PoissonResult:
    system: str
    load_fraction: float
    rate_per_s: float
    duration_s: float
    submitted: int
    answered: int
    p50_s: float
    p99_s: float
    queue_p50_s: float
    queue_p99_s: float
    cpu_ms_per_job: dict[str, float]
    latencies_s: list[float]
    retries: int
    load: str


async def poisson_jobs(
    system: System, rate: float, duration: float, tag: str, args: argparse.Namespace
) -> list[Job]:
    rng = random.Random(f"{system.name} {tag}")
    in_flight = max(16, int(rate * 30))
    async with http_client(system, 2 * in_flight) as http:
        tasks = []
        start = time.perf_counter()
        at = 0.0
        i = 0
        while True:
            at += rng.expovariate(rate)
            if at > duration:
                break
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            query = QUESTION.format(tag=tag, i=i)
            tasks.append(asyncio.create_task(ask_within(system, http, query, args.poll, 300)))
            i += 1
        jobs = list(await asyncio.gather(*tasks))
        await fill_queue_waits(system, http, jobs)
    return jobs


def run_poisson(system: System, shared: Shared, capacity: float) -> list[PoissonResult]:
    args = shared.args
    out = []
    for fraction in args.loads:
        rate = fraction * capacity
        meter = system.meter(shared)
        load = load_now()
        meter.start()
        tag = f"poisson {fraction:g} {system.name}"
        jobs = asyncio.run(poisson_jobs(system, rate, args.duration, tag, args))
        cpu = meter.stop()
        latencies = [j.latency_s for j in jobs if j.latency_s is not None]
        queues = [j.queue_s for j in jobs if j.queue_s is not None]
        answered = len(latencies)
        out.append(
            PoissonResult(
                system=system.name,
                load_fraction=fraction,
                rate_per_s=round(rate, 3),
                duration_s=args.duration,
                submitted=len(jobs),
                answered=answered,
                p50_s=pct(latencies, 50),
                p99_s=pct(latencies, 99),
                queue_p50_s=pct(queues, 50),
                queue_p99_s=pct(queues, 99),
                cpu_ms_per_job={k: round(1000 * v / max(1, answered), 1) for k, v in cpu.items()},
                latencies_s=[round(x, 4) for x in latencies],
                retries=sum(j.retries for j in jobs),
                load=load,
            )
        )
        print(
            f"{system.name} poisson {fraction:g} x {capacity:.2f}/s: {answered}/{len(jobs)}"
            f" answered, p50/p99 {out[-1].p50_s}/{out[-1].p99_s} s",
            file=sys.stderr,
        )
    return out


@dataclass
class KillResult:
    system: str
    n: int
    killed_at_s: float
    answered: int
    lost: int
    all_done_s: float
    p50_s: float
    p99_s: float
    done_at_s: list[float]
    first_error: str | None
    retries: int
    load: str


def busiest_worker(system: System, llm_port: int) -> Service:
    """The worker with the most connections open to the mock LLM: the one running the most
    jobs (which worker a queue hands the burst to is up to it; killing an idle one would
    show nothing)."""

    def llm_connections(worker: Service) -> int:
        connections = psutil.Process(worker.pid).net_connections(kind="tcp")
        return sum(1 for c in connections if c.raddr and c.raddr.port == llm_port)

    return max(system.workers, key=llm_connections)


async def kill_jobs(
    system: System, args: argparse.Namespace, tag: str, llm_port: int
) -> tuple[list[Job], float, float]:
    async with http_client(system, 2 * args.n + 8) as http:
        start = time.perf_counter()
        questions = [QUESTION.format(tag=tag, i=i) for i in range(args.n)]
        tasks = [
            asyncio.create_task(ask_within(system, http, q, args.poll, args.kill_timeout))
            for q in questions
        ]
        await asyncio.sleep(args.kill_after)
        busiest_worker(system, llm_port).proc.send_signal(signal.SIGKILL)
        killed = time.perf_counter() - start
        jobs = list(await asyncio.gather(*tasks))
    return jobs, start, killed


def run_kill(system: System, shared: Shared) -> KillResult:
    load = load_now()
    llm_port = int(shared.llm.url.rsplit(":", 1)[1])
    jobs, start, killed = asyncio.run(
        kill_jobs(system, shared.args, f"kill {system.name}", llm_port)
    )
    done = sorted(j.done - start for j in jobs if j.done is not None)
    latencies = [j.latency_s for j in jobs if j.latency_s is not None]
    errors = [j.error for j in jobs if j.error]
    return KillResult(
        system=system.name,
        n=len(jobs),
        killed_at_s=round(killed, 3),
        answered=len(done),
        lost=len(jobs) - len(done),
        all_done_s=round(done[-1], 3) if done else math.nan,
        p50_s=pct(latencies, 50),
        p99_s=pct(latencies, 99),
        done_at_s=[round(x, 3) for x in done],
        first_error=errors[0] if errors else None,
        retries=sum(j.retries for j in jobs),
        load=load,
    )


@dataclass
class NoopResult:
    system: str
    n: int
    concurrency: int
    enqueue_per_s: float
    drain_s: float
    jobs_per_s: float
    cpu_ms_per_job: dict[str, float]
    load: str


async def enqueue_noops(system: System, n: int, connections: int = 16) -> tuple[list[str], float]:
    """``n`` no-op jobs through HTTP (no worker running); their ids and the seconds it took."""
    path = "/v1/jobs" if system.kind == "ragserve" else "/v1/noop"
    ids: list[str] = []
    async with http_client(system, connections) as http:
        start = time.perf_counter()

        async def loop(worker: int) -> None:
            for i in range(worker, n, connections):
                body = {"query": f"no-op {i}", "collection": COLLECTION}
                response = await http.post(path, json=body)
                response.raise_for_status()
                ids.append(response.json()["job_id"])

        await asyncio.gather(*(loop(w) for w in range(connections)))
        return ids, time.perf_counter() - start


def ragserve_drain_window(pg_dir: Path, ids: Sequence[str]) -> tuple[int, float]:
    """Jobs among ``ids`` that succeeded, and first ``started_at`` -> last ``finished_at``."""
    import psycopg

    from ragserve.db.embedded import start_embedded_server

    with psycopg.connect(start_embedded_server(pg_dir)) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))"
            " FROM jobs WHERE id = ANY(%s::uuid[]) AND status = 'succeeded'",
            (list(ids),),
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0.0)


def celery_drain_window(redis_url: str, ids: Sequence[str]) -> tuple[int, float]:
    """Tasks among ``ids`` with a stored result, and first start -> last finish."""
    import redis

    store = redis.Redis.from_url(f"{redis_url}/1")
    metas = [json.loads(m) for m in store.mget([f"celery-task-meta-{i}" for i in ids]) if m]
    results = [m["result"] for m in metas if m["status"] == "SUCCESS"]
    if not results:
        return 0, 0.0
    first = min(r["started_at"] for r in results)
    return len(results), max(r["finished_at"] for r in results) - first


def run_noop(system: System, shared: Shared) -> NoopResult:
    """Queue ``--noop-n`` no-op jobs, then let one worker process drain them."""
    args = shared.args
    for worker in system.workers:  # started without workers; be sure
        worker.stop()
    system.workers = []
    ids, enqueue_s = asyncio.run(enqueue_noops(system, args.noop_n))
    load = load_now()
    assert system.pg_dir is not None
    # CPU from the worker's "ready" line on: its start-up (imports) is not a per-job cost. The
    # jobs it took before that line was read (< 20 ms) are missed: a slight understatement.
    if system.kind == "ragserve":
        worker = start_noop_worker(system.pg_dir, shared.scratch, args.concurrency)
    else:
        worker = start_celery_worker(system, system.env, shared.scratch, 0)
    system.workers = [worker]
    meter = system.meter(shared)
    meter.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if system.kind == "ragserve":
            count, window = ragserve_drain_window(system.pg_dir, ids)
        else:
            count, window = celery_drain_window(str(system.redis_url), ids)
        if count >= len(ids):
            break
        time.sleep(0.5)
    cpu = meter.stop()
    return NoopResult(
        system=system.name,
        n=len(ids),
        concurrency=args.concurrency,
        enqueue_per_s=round(len(ids) / enqueue_s, 1),
        drain_s=round(window, 3),
        jobs_per_s=round(count / window, 1) if window else math.nan,
        cpu_ms_per_job={k: round(1000 * v / max(1, count), 2) for k, v in cpu.items()},
        load=load,
    )


@dataclass
class IngressResult:
    system: str
    connections: int
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_req: dict[str, float]
    load: str


def run_ingress(system: System, shared: Shared) -> list[IngressResult]:
    args = shared.args
    if shutil.which("wrk") is None:
        raise RuntimeError("ingress needs wrk (Debian: apt-get install -y wrk)")
    for worker in system.workers:  # submissions only: jobs queue up
        worker.stop()
    system.workers = []
    script = shared.scratch / "post_jobs.lua"
    script.write_text(WRK_SCRIPT)
    run_wrk(system.url, 4, 1, 1, script, "warm-up")
    out = []
    for connections in args.connections:
        meter = system.meter(shared)
        load = load_now()
        meter.start()
        stats = run_wrk(
            system.url,
            connections,
            args.ingress_duration,
            min(2, connections),  # wrk threads: as in bench/ingress.py, at most one per core
            script,
            f"c{connections}",
        )
        cpu = meter.stop()
        requests = int(stats["requests"])
        errors = int(sum(stats.get(k, 0) for k in ("connect", "read", "write", "status")))
        out.append(
            IngressResult(
                system=system.name,
                connections=connections,
                requests=requests,
                errors=errors + int(stats.get("timeout", 0)),
                requests_per_s=round(requests / (stats["duration_us"] / 1e6), 1),
                p50_ms=round(stats["p50_us"] / 1000, 1),
                p99_ms=round(stats["p99_us"] / 1000, 1),
                cpu_ms_per_req={
                    k: round(1000 * v / max(1, requests), 2) for k, v in cpu.items() if k != "mocks"
                },
                load=load,
            )
        )
        print(
            f"{system.name} ingress c={connections}: {out[-1].requests_per_s} req/s",
            file=sys.stderr,
        )
    return out


# --------------------------------------------------------------------------- the run


@dataclass
class Results:
    burst: list[BurstResult] = field(default_factory=list)
    poisson: list[PoissonResult] = field(default_factory=list)
    kill: list[KillResult] = field(default_factory=list)
    noop: list[NoopResult] = field(default_factory=list)
    ingress: list[IngressResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def include(results: Results, path: Path) -> None:
    """Add the figures of an earlier run (its ``--json``) for each workload and system this
    run (or an earlier ``--include``) has none of, so that one report can hold several runs."""
    earlier = json.loads(path.read_text())
    kinds: dict[str, Any] = {
        "burst": BurstResult,
        "poisson": PoissonResult,
        "kill": KillResult,
        "noop": NoopResult,
        "ingress": IngressResult,
    }
    for name, kind in kinds.items():
        have = {r.system for r in getattr(results, name)}
        rows = [kind(**r) for r in earlier.get(name, []) if r["system"] not in have]
        getattr(results, name).extend(rows)


def celery_missing() -> str | None:
    """Why the Celery peer cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (Debian: apt-get install -y redis-server)"
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[test]')"
    return None


def measure(shared: Shared, results: Results) -> None:
    args = shared.args
    missing = celery_missing()
    for name in args.systems:
        if name.startswith("celery") and missing:
            results.skipped[name] = missing
            print(f"skipping {name}: {missing}", file=sys.stderr)
            continue
        wanted = [w for w in args.workloads if name in APPLIES[w]]
        answers = [w for w in wanted if w in ("burst", "poisson", "kill")]
        if answers:
            with running(name, shared) as system:
                capacity = None
                if "burst" in answers or "poisson" in answers:
                    burst = run_burst(system, shared)
                    results.burst.append(burst)
                    capacity = burst.capacity_per_s
                    print(
                        f"{name} burst: makespan {burst.makespan_s} s, one job "
                        f"{burst.single_s} s (load {burst.load})",
                        file=sys.stderr,
                    )
                if "poisson" in answers and capacity:
                    results.poisson += run_poisson(system, shared, capacity)
                if "kill" in answers:
                    results.kill.append(run_kill(system, shared))
                    print(f"{name} kill: {results.kill[-1]}", file=sys.stderr)
        if "noop" in wanted:
            with running(name, shared, workers=0) as system:
                results.noop.append(run_noop(system, shared))
                print(f"{name} noop: {results.noop[-1]}", file=sys.stderr)
        if "ingress" in wanted and shutil.which("wrk") is None:
            results.skipped[f"{name} ingress"] = "wrk is not installed (apt-get install -y wrk)"
        elif "ingress" in wanted:
            with running(name, shared, workers=0) as system:
                results.ingress += run_ingress(system, shared)


# --------------------------------------------------------------------------- report


def cpu_cell(cpu: dict[str, float], n: int) -> str:
    return f"{1000 * cpu['system'] / max(1, n):.1f} / {1000 * cpu['stores'] / max(1, n):.1f}"


def report(args: argparse.Namespace, results: Results) -> str:
    lines = [
        f"mock LLM ttft {args.ttft} s + {args.tps} tok/s; mock embeddings"
        f" {args.embeddings_latency * 1000:g} ms; --concurrency {args.concurrency} per worker"
        f" process; Celery clients poll every {args.poll:g} s"
    ]
    if results.burst:
        lines += ["", f"### {args.n} questions at once", ""]
        rows = [
            [
                b.system,
                f"{b.answered}{'*' if b.extrapolated else ''}",
                f"{b.single_s:.2f}",
                f"{b.makespan_s:.2f}{'*' if b.extrapolated else ''}",
                f"{b.makespan_s / b.single_s:.2f}",
                f"{b.p50_s:.2f} / {b.p99_s:.2f}",
                f"{b.capacity_per_s:.2f}",
                b.llm_max_in_flight,
                b.retries,
                cpu_cell(b.cpu_s, b.answered),
                b.load,
            ]
            for b in results.burst
        ]
        headers = ["system", "answered", "one job s", "makespan s", "/ one job"]
        headers += ["latency p50 / p99 s", "jobs/s", "LLM calls at once", "client retries"]
        headers += ["CPU ms per job: system / stores", "load"]
        lines.append(format_table(headers, rows))
        if any(b.extrapolated for b in results.burst):
            lines.append(f"\n* measured on {args.serial_n} questions, extrapolated linearly")
    if results.poisson:
        lines += ["", f"### Poisson arrivals, {args.duration:g} s per load", ""]
        rows = [
            [
                p.system,
                f"{100 * p.load_fraction:.0f} %",
                p.rate_per_s,
                f"{p.answered} / {p.submitted}",
                f"{p.p50_s:.2f} / {p.p99_s:.2f}",
                f"{p.queue_p50_s:.3f} / {p.queue_p99_s:.3f}",
                p.retries,
                f"{p.cpu_ms_per_job['system']:.1f} / {p.cpu_ms_per_job['stores']:.1f}",
                p.load,
            ]
            for p in results.poisson
        ]
        headers = ["system", "load", "arrivals/s", "answered / sent", "latency p50 / p99 s"]
        headers += ["queue wait p50 / p99 s", "client retries", "CPU ms per job: system / stores"]
        headers += ["load avg"]
        lines.append(format_table(headers, rows))
    if results.kill:
        lines += ["", f"### A worker SIGKILLed {args.kill_after:g} s into {args.n} questions", ""]
        rows = [
            [
                k.system,
                k.killed_at_s,
                k.answered,
                k.lost,
                k.all_done_s,
                f"{k.p50_s:.2f} / {k.p99_s:.2f}",
                k.retries,
                k.load,
            ]
            for k in results.kill
        ]
        headers = ["system", "killed at s", "answered", f"lost (> {args.kill_timeout:g} s)"]
        headers += ["last answer at s", "latency p50 / p99 s", "client retries", "load"]
        lines.append(format_table(headers, rows))
    if results.noop:
        lines += ["", f"### No-op jobs drained by one worker process ({args.noop_n} queued)", ""]
        rows = [
            [
                r.system,
                r.concurrency,
                r.n,
                r.enqueue_per_s,
                r.drain_s,
                r.jobs_per_s,
                f"{r.cpu_ms_per_job['system']:g} / {r.cpu_ms_per_job['stores']:g}",
                r.load,
            ]
            for r in results.noop
        ]
        headers = ["system", "concurrency", "jobs", "queued/s (HTTP, 16 conn.)", "drain s"]
        headers += ["jobs/s", "CPU ms per job: API + worker / stores", "load"]
        lines.append(format_table(headers, rows))
    if results.ingress:
        lines += ["", f"### Ingress: POST /v1/jobs, wrk {args.ingress_duration} s", ""]
        rows = [
            [
                r.system,
                r.connections,
                r.requests,
                r.errors,
                r.requests_per_s,
                f"{r.p50_ms:g} / {r.p99_ms:g}",
                f"{r.cpu_ms_per_req['system']:g} / {r.cpu_ms_per_req['stores']:g}",
                r.load,
            ]
            for r in results.ingress
        ]
        headers = ["system", "connections", "requests", "errors", "req/s", "p50 / p99 ms"]
        headers += ["CPU ms per request: API / stores", "load"]
        lines.append(format_table(headers, rows))
    for name, why in results.skipped.items():
        lines.append(f"\nskipped {name}: {why}")
    return "\n".join(lines)


def charts(folder: Path, results: Results) -> list[Path]:
    """PNG charts: latency distributions, throughput vs concurrency, recovery timeline."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def cdf(ax: Any, values: Sequence[float], label: str) -> None:
        ordered = sorted(values)
        if ordered:
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)

    if results.burst or results.poisson:
        fig, axes = plt.subplots(1, 1 + len({p.load_fraction for p in results.poisson}))
        axes = list(axes) if hasattr(axes, "__len__") else [axes]
        fig.set_size_inches(5 * len(axes), 4)
        for b in results.burst:
            cdf(axes[0], b.latencies_s, b.system)
        axes[0].set_title("100 questions at once")
        fractions = sorted({p.load_fraction for p in results.poisson})
        for ax, fraction in zip(axes[1:], fractions, strict=True):
            for p in results.poisson:
                if p.load_fraction == fraction:
                    cdf(ax, p.latencies_s, p.system)
            ax.set_title(f"Poisson arrivals, {100 * fraction:.0f} % of capacity")
        for ax in axes:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([1, 2, 3, 5, 10, 20, 50]))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("latency, submit -> answer (s, log)")
            ax.set_ylabel("fraction of questions")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(folder / "peers-latency.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    if results.ingress or results.noop or results.poisson:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for name in dict.fromkeys(r.system for r in results.ingress):
            points = [
                (r.connections, r.requests_per_s) for r in results.ingress if r.system == name
            ]
            axes[0].plot(*zip(*points, strict=True), marker="o", label=name)
        axes[0].set_xscale("log")
        axes[0].set_xlabel("client connections (wrk)")
        axes[0].set_ylabel("POST /v1/jobs per s")
        axes[0].set_title("Ingress")
        for name in dict.fromkeys(p.system for p in results.poisson):
            points = [
                (p.rate_per_s, p.answered / p.duration_s)
                for p in results.poisson
                if p.system == name
            ]
            axes[1].plot(*zip(*points, strict=True), marker="o", label=name)
        axes[1].set_xlabel("offered answer jobs per s (Poisson)")
        axes[1].set_ylabel("answered per s")
        axes[1].set_title("Answer throughput vs offered load")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(folder / "peers-throughput.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    if results.kill:
        fig, ax = plt.subplots(figsize=(7, 4))
        for k in results.kill:
            xs = [0.0, *k.done_at_s]
            ax.step(xs, range(len(xs)), where="post", label=f"{k.system} ({k.lost} lost)")
        ax.axvline(results.kill[0].killed_at_s, color="red", linestyle="--", label="SIGKILL")
        ax.set_xlabel("seconds since the questions were sent")
        ax.set_ylabel("questions answered")
        ax.set_title(f"A worker killed mid-burst ({results.kill[0].n} questions)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(folder / "peers-recovery.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--systems",
        nargs="*",
        choices=SYSTEMS,
        default=list(SYSTEMS),
        help="none: only report what --include brings",
    )
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--n", type=int, default=100, help="questions at once (burst, kill)")
    parser.add_argument("--single-runs", type=int, default=3, help="questions alone, timed")
    parser.add_argument("--serial-n", type=int, default=10, help="proto-serial's burst size")
    parser.add_argument("--concurrency", type=int, default=100, help="jobs per worker process")
    parser.add_argument("--ttft", type=float, default=1.5, help="mock LLM: seconds to 1st token")
    parser.add_argument("--tps", type=float, default=50.0, help="mock LLM: tokens per second")
    parser.add_argument("--embeddings-latency", type=float, default=0.02, help="seconds")
    parser.add_argument("--poll", type=float, default=0.5, help="Celery clients' poll interval")
    parser.add_argument("--job-timeout", type=float, default=300, help="seconds per question")
    parser.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.8])
    parser.add_argument("--duration", type=float, default=30, help="seconds per Poisson phase")
    parser.add_argument("--kill-after", type=float, default=1.0, help="seconds into the burst")
    parser.add_argument("--kill-timeout", type=float, default=90, help="a job not answered by")
    parser.add_argument(
        "--visibility-timeout", type=float, default=30, help="celery-acks-late's (seconds)"
    )
    parser.add_argument("--noop-n", type=int, default=2000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--ingress-duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--charts", type=Path, metavar="DIR", help="write PNG charts there")
    parser.add_argument(
        "--include",
        type=Path,
        nargs="*",
        default=[],
        metavar="JSON",
        help="add earlier runs' figures (--json) where this run has none (first one wins)",
    )
    parser.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write JSON ('-' = stdout)")
    args = parser.parse_args(argv)
    sizes = (args.n, args.serial_n, args.concurrency, args.noop_n, args.single_runs)
    if min(sizes) < 1 or args.duration <= 0:
        parser.error("sizes must be >= 1 and --duration > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    results = Results()
    with scratch_dir("ragserve-bench-peers-", keep=args.keep) as scratch:
        llm = start_mock_llm(scratch, ttft=args.ttft, tps=args.tps, max_concurrency=1000)
        embeddings = start_mock_embeddings(scratch, args.embeddings_latency)
        try:
            measure(Shared(args, scratch, llm, embeddings), results)
        finally:
            embeddings.stop()
            llm.stop()
    info["load_at_end"] = load_now()
    for path in args.include:
        include(results, path)
    if args.charts:
        for path in charts(args.charts, results):
            print(f"wrote {path}", file=sys.stderr)
    finish_run(args, info, report(args, results), asdict(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
