"""OpenAI door overhead: CPU per request of ``POST /v1/chat/completions`` (streamed and not)
against ``POST /v1/jobs`` and ``POST /v1/ask``, on cached answers, in one ``ragserve api``.

Starts ``ragserve api`` and ``ragserve worker`` on a fresh embedded PostgreSQL (default
offline answerer, nothing downloaded), ingests a few short documents, and asks ``--questions``
distinct questions once so that their answers are cached. Then each path is loaded with the
same cached questions by ``--connections`` asyncio httpx loops for ``--requests`` requests:

- ``jobs``: ``POST /v1/jobs`` (202; a cached answer makes a job that is born succeeded);
- ``ask``: ``POST /v1/ask`` (200 with the job body: submit and read the result);
- ``chat``: ``POST /v1/chat/completions`` (the completion body, sources footer, usage);
- ``chat-stream``: the same with ``stream: true``, read to ``data: [DONE]``.

Every path creates one job per request (the cache hit is recorded as a job, as for any
answer), so the difference is the door's own work: parsing the OpenAI request, the model
check, waiting for the job / following its events, and the OpenAI body. Reported per request:
CPU milliseconds of the API process and of PostgreSQL (steady on a shared machine), requests
per second and latency (which depend on what else the cores do; the client runs on them too).

Run (about a minute)::

    python bench/openai_overhead.py                       # 400 requests x 4 paths, 2 runs
    python bench/openai_overhead.py --requests 20 --connections 2 --repeat 1   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from _common import (
    add_run_args,
    bench_parser,
    best_and_median,
    finish_run,
    format_table,
    load_now,
    machine_info,
)
from concurrency import (
    CpuMeter,
    Service,
    data_folder,
    postgres_processes,
    processes,
    profiled,
    scratch_dir,
    start_ragserve,
)
from load_baselines import percentile

COLLECTION = "bench"
DOCUMENTS = [
    {"source": "leave.md", "text": "Full-time employees get 23 days of paid annual leave."},
    {"source": "wifi.md", "text": "The guest Wi-Fi network is called Lumen-Guest."},
    {"source": "parking.md", "text": "Parking is free for employees on level B2."},
    {"source": "canteen.md", "text": "The canteen opens at 11:30 on weekdays."},
]
TOPICS = ["annual leave", "the guest Wi-Fi", "parking", "the canteen"]
PATHS = ["jobs", "ask", "chat", "chat-stream"]

Call = Callable[[httpx.AsyncClient, str], Awaitable[bool]]


def questions(count: int) -> list[str]:
    """Distinct questions (each its own cache entry), cycling over the documents' topics."""
    return [
        f"What does the handbook say about {TOPICS[i % len(TOPICS)]}? ({i})" for i in range(count)
    ]


async def post_job(http: httpx.AsyncClient, question: str) -> bool:
    body = {"query": question, "collection": COLLECTION}
    response = await http.post("/v1/jobs", json=body)
    return response.status_code == 202 and response.json()["status"] == "succeeded"


async def post_ask(http: httpx.AsyncClient, question: str) -> bool:
    body = {"query": question, "collection": COLLECTION, "wait_s": 10}
    response = await http.post("/v1/ask", json=body)
    return response.status_code == 200 and bool(response.json()["result"]["answer"])


def chat_body(question: str, stream: bool) -> dict[str, object]:
    return {
        "model": COLLECTION,
        "messages": [{"role": "user", "content": question}],
        "stream": stream,
    }


async def post_chat(http: httpx.AsyncClient, question: str) -> bool:
    response = await http.post("/v1/chat/completions", json=chat_body(question, False))
    return response.status_code == 200 and response.json()["ragserve"]["cached"] is True


async def post_chat_stream(http: httpx.AsyncClient, question: str) -> bool:
    done = False
    body = chat_body(question, True)
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            done = done or line == "data: [DONE]"
    return response.status_code == 200 and done


CALLS: dict[str, Call] = {
    "jobs": post_job,
    "ask": post_ask,
    "chat": post_chat,
    "chat-stream": post_chat_stream,
}


@dataclass
class PathResult:
    path: str
    run: int
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    api_cpu_ms_per_req: float
    postgres_cpu_ms_per_req: float
    load_before: str


async def load(
    url: str, call: Call, asked: Sequence[str], requests: int, connections: int
) -> tuple[list[float], int, float]:
    """``requests`` calls from ``connections`` loops: latencies, errors, elapsed seconds."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def loop() -> None:
            nonlocal errors
            for i in counter:
                sent = time.perf_counter()
                ok = await call(http, asked[i % len(asked)])
                latencies.append(time.perf_counter() - sent)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        return latencies, errors, time.perf_counter() - start


def one_run(args: argparse.Namespace, api: Service, path: str, run: int) -> PathResult:
    meter = CpuMeter(
        {"api": processes(api.pid), "postgres": lambda: postgres_processes(args.data_dir)}
    )
    load_before = load_now()
    meter.start()
    with profiled(api.pid, args.profile, f"api-{path}-{run}.txt", top=25):
        latencies, errors, elapsed = asyncio.run(
            load(api.url, CALLS[path], args.asked, args.requests, args.connections)
        )
    cpu = meter.stop()
    return PathResult(
        path=path,
        run=run,
        requests=len(latencies),
        errors=errors,
        requests_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(latencies, 50) * 1000, 1),
        p99_ms=round(percentile(latencies, 99) * 1000, 1),
        api_cpu_ms_per_req=round(1000 * cpu["api"] / len(latencies), 2),
        postgres_cpu_ms_per_req=round(1000 * cpu["postgres"] / len(latencies), 2),
        load_before=load_before,
    )


def prepare(api: Service, asked: Sequence[str]) -> None:
    """Ingest the documents and cache an answer to every question (the worker computes them)."""
    with httpx.Client(base_url=api.url, timeout=60) as http:
        ingest = http.post(
            f"/v1/collections/{COLLECTION}/documents", json={"documents": DOCUMENTS}
        ).json()
        wait_succeeded(http, ingest["job_id"])
        for question in asked:
            accepted = http.post("/v1/jobs", json={"query": question, "collection": COLLECTION})
            wait_succeeded(http, accepted.json()["job_id"])


def wait_succeeded(http: httpx.Client, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (status := http.get(f"/v1/jobs/{job_id}").json()["status"]) != "succeeded":
        if status in ("failed", "cancelled") or time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} is {status}")
        time.sleep(0.05)


def measure(args: argparse.Namespace, scratch: Path) -> list[PathResult]:
    args.data_dir = data_folder(scratch, "data")
    args.asked = questions(args.questions)
    api = start_ragserve("api", args.data_dir, scratch)
    worker = start_ragserve("worker", args.data_dir, scratch)
    results = []
    try:
        prepare(api, args.asked)
        for path in PATHS:  # warm-up: first requests of each path pay for imports and pools
            asyncio.run(load(api.url, CALLS[path], args.asked, 2 * args.connections, 2))
        for run in range(1, args.repeat + 1):
            for path in PATHS:  # interleaved, so that a busy moment of the machine hits all
                result = one_run(args, api, path, run)
                print(
                    f"{path} run {run}: {result.api_cpu_ms_per_req} ms API CPU per request,"
                    f" {result.requests_per_s} req/s (load {result.load_before})",
                    file=sys.stderr,
                )
                results.append(result)
    finally:
        worker.stop()
        api.stop()
    return results


def report(results: Sequence[PathResult]) -> str:
    rows = [
        [
            r.path,
            r.run,
            r.requests,
            r.errors,
            r.requests_per_s,
            f"{r.p50_ms:g} / {r.p99_ms:g}",
            f"{r.api_cpu_ms_per_req:g} / {r.postgres_cpu_ms_per_req:g}",
            r.load_before,
        ]
        for r in results
    ]
    headers = [
        "path",
        "run",
        "requests",
        "errors",
        "req/s",
        "latency p50 / p99 ms",
        "CPU ms per request: API / PostgreSQL",
        "load",
    ]
    lines = [format_table(headers, rows), ""]
    best = {p: min(r.api_cpu_ms_per_req for r in results if r.path == p) for p in PATHS}
    for path in PATHS:
        cpu = [r.api_cpu_ms_per_req for r in results if r.path == path]
        rates = [r.requests_per_s for r in results if r.path == path]
        extra = best[path] - best["jobs"]
        lines.append(
            f"{path}: API CPU ms per request best / median {best_and_median(cpu, min)}"
            f" ({extra:+.2f} ms vs jobs); req/s best / median {best_and_median(rates)}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--requests", type=int, default=400, help="requests per path and run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--questions", type=int, default=20, help="distinct cached questions")
    parser.add_argument("--repeat", type=int, default=2)
    add_run_args(parser, profiled="the API")
    args = parser.parse_args(argv)
    if min(args.requests, args.connections, args.questions, args.repeat) < 1:
        parser.error("--requests, --connections, --questions and --repeat must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    with scratch_dir("ragserve-bench-openai-", keep=args.keep) as scratch:
        results = measure(args, scratch)
    args.asked = len(args.asked)
    args.data_dir = str(args.data_dir)
    finish_run(args, info, report(results), {"results": [asdict(r) for r in results]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
