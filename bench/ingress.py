"""Ingress: ``POST /v1/jobs`` requests per second and latency of one ``ragserve api`` process.

Starts ``ragserve api`` (embedded PostgreSQL in a fresh folder, no worker: jobs just queue) on a
free loopback port and loads it from another process with ``wrk`` (Debian package ``wrk``; a
Lua script gives every request a distinct question, so nothing is cached or coalesced), for
``--duration`` seconds at each ``--connections`` value, after a short warm-up. Without wrk the
script stops and says so; ``--client python`` uses an asyncio httpx client instead (it competes
with the server for the same cores, so it understates the server). Afterwards the number of
``created`` submissions the API counted (``/metrics``; it includes requests still in flight
when wrk stopped counting) is shown next to the ``202`` answers, with the CPU time the API
process and the PostgreSQL server spent per created job: on a shared machine that is steadier
than requests per second, and it says how many jobs per second each core could take.

``--api-workers N`` starts ``ragserve api --workers N`` (N processes on one port, SO_REUSEPORT);
CPU is then summed over all of them, and "jobs created" is the ``202`` count (``/metrics`` is
per process).

``--profile DIR`` records the API process with py-spy during each run and prints where its
time goes.

``--auth both`` measures the cost of an API key check: two API processes, one with
``RAGSERVE_AUTH=off`` and one with ``RAGSERVE_AUTH=api_key`` (a key made with ``ragserve keys
create``, sent as ``Authorization: Bearer`` on every request), loaded in turn, run by run.

Run (about a minute)::

    apt-get install -y wrk
    python bench/ingress.py                            # 64 connections, 10 s, 2 runs
    python bench/ingress.py --connections 16 64 256 --profile /tmp/ingress-prof
    python bench/ingress.py --connections 4 --duration 1 --warmup 1 --repeat 1   # smoke
    python bench/ingress.py --auth both --repeat 3     # key check on vs off
    python bench/ingress.py --connections 16 64 --api-workers 2   # two API processes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

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
    ProcessList,
    Service,
    data_folder,
    postgres_processes,
    profiled,
    scratch_dir,
    start_ragserve,
)
from load_baselines import percentile

# Every request its own question: thread id x request counter (wrk gives each thread its own
# Lua state). ``done`` prints one JSON line that ``run_wrk`` reads.
WRK_SCRIPT = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  run = args[1] or "0"
  if args[2] then wrk.headers["Authorization"] = "Bearer " .. args[2] end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
  counter = counter + 1
  local body = string.format(
    '{"query": "How many days of leave do I get? (run %s, thread %s, request %d)"}',
    run, tid, counter)
  return wrk.format(nil, "/v1/jobs", nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d,'
    .. ' "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d,'
    .. ' "max_us": %d, "mean_us": %f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


@dataclass
class IngressResult:
    auth: str
    client: str
    connections: int
    duration_s: float
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    jobs_created: int
    api_cpu_ms_per_req: float
    postgres_cpu_ms_per_req: float
    load_before: str
    load_after: str
    api_workers: int = 1


def run_wrk(
    url: str,
    connections: int,
    duration: int,
    threads: int,
    script: Path,
    tag: str,
    key: str | None = None,
) -> dict[str, float]:
    """One wrk run; the figures its ``done`` hook printed."""
    args = [
        "wrk",
        "-t",
        str(min(threads, connections)),  # wrk wants at least one connection per thread
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        tag,
        *([key] if key else []),
    ]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    match = re.search(r"^WRK_JSON (.*)$", done.stdout, re.M)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    stats: dict[str, float] = json.loads(match.group(1))
    return stats


async def run_python_client(
    url: str, connections: int, duration: float, tag: str, key: str | None = None
) -> dict[str, float]:
    """The same load from asyncio + httpx: ``connections`` loops, one request at a time each."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10, headers=headers) as http:
        start = time.perf_counter()
        deadline = start + duration

        async def loop(worker: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                body = {"query": f"How many days of leave do I get? ({tag}, {worker}, {i})"}
                sent = time.perf_counter()
                response = await http.post("/v1/jobs", json=body)
                latencies.append(time.perf_counter() - sent)
                errors += response.status_code != 202

        await asyncio.gather(*(loop(w) for w in range(connections)))
        elapsed = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "status": errors,
        "p50_us": percentile(latencies, 50) * 1e6,
        "p90_us": percentile(latencies, 90) * 1e6,
        "p99_us": percentile(latencies, 99) * 1e6,
        "max_us": max(latencies) * 1e6,
    }


def jobs_created(api: Service) -> int:
    """Answer jobs the API reports as created (a counter of its ``/metrics``)."""
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    match = re.search(
        r'^ragserve_jobs_submitted_total\{kind="answer",outcome="created"\} (\S+)$', text, re.M
    )
    return int(float(match.group(1))) if match else 0


@dataclass
class Api:
    """One API process under load: its auth mode, its data folder and the key it wants."""

    auth: str
    service: Service
    data_dir: Path
    key: str | None


def start_api(args: argparse.Namespace, scratch: Path, auth: str) -> Api:
    data_dir = data_folder(scratch, f"data-{auth}")
    settings = {"db_pool_size": str(args.pool_size)} if args.pool_size else {}
    if args.api_workers > 1:
        settings["api_workers"] = str(args.api_workers)
    api = start_ragserve("api", data_dir, scratch, name=f"api-{auth}", auth=auth, **settings)
    key = None
    if auth == "api_key":
        created = subprocess.run(
            [sys.executable, "-m", "ragserve", "keys", "create", "--tenant", "bench"],
            env={**os.environ, "RAGSERVE_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            check=True,
        )
        key = created.stdout.strip().splitlines()[-1]
    return Api(auth, api, data_dir, key)


def one_run(
    args: argparse.Namespace, target: Api, connections: int, script: Path, tag: str
) -> IngressResult:
    api = target.service
    several = args.api_workers > 1
    created_before = 0 if several else jobs_created(api)
    load_before = load_now()
    meter = CpuMeter(
        {"api": process_tree(api.pid), "postgres": lambda: postgres_processes(target.data_dir)}
    )
    meter.start()
    if args.client == "wrk":
        stats = run_wrk(api.url, connections, args.duration, args.threads, script, tag, target.key)
    else:
        stats = asyncio.run(run_python_client(api.url, connections, args.duration, tag, target.key))
    cpu = meter.stop()
    errors = int(sum(stats.get(k, 0) for k in ("connect", "read", "write", "status", "timeout")))
    # /metrics counts per process: with several, count the 202s instead.
    created = int(stats["requests"]) - errors if several else jobs_created(api) - created_before
    seconds = stats["duration_us"] / 1e6
    return IngressResult(
        auth=target.auth,
        client=args.client,
        connections=connections,
        duration_s=round(seconds, 2),
        requests=int(stats["requests"]),
        errors=errors,
        requests_per_s=round(stats["requests"] / seconds, 1),
        p50_ms=round(stats["p50_us"] / 1000, 1),
        p90_ms=round(stats["p90_us"] / 1000, 1),
        p99_ms=round(stats["p99_us"] / 1000, 1),
        max_ms=round(stats["max_us"] / 1000, 1),
        jobs_created=created,
        api_cpu_ms_per_req=round(1000 * cpu["api"] / max(1, created), 2),
        postgres_cpu_ms_per_req=round(1000 * cpu["postgres"] / max(1, created), 2),
        load_before=load_before,
        load_after=load_now(),
        api_workers=args.api_workers,
    )


def process_tree(pid: int) -> ProcessList:
    """The process and its children (``ragserve api --workers N``: the N API processes)."""

    def listed() -> list[psutil.Process]:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]

    return listed


def measure(args: argparse.Namespace, scratch: Path) -> list[IngressResult]:
    script = scratch / "post_jobs.lua"
    script.write_text(WRK_SCRIPT)
    modes = ["off", "api_key"] if args.auth == "both" else [args.auth]
    apis: list[Api] = []
    results = []
    try:
        for mode in modes:
            apis.append(start_api(args, scratch, mode))
        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        for api in apis:
            one_run(warm, api, min(args.connections), script, "warm-up")
        for connections in args.connections:
            for run in range(args.repeat):
                for api in apis:  # in turn, so that a change of load hits both alike
                    name = f"api-{api.auth}-c{connections}-{run + 1}.txt"
                    with profiled(api.service.pid, args.profile, name, top=25):
                        tag = f"{api.auth}-c{connections}-{run}"
                        result = one_run(args, api, connections, script, tag)
                    print(
                        f"auth {api.auth}, {connections} connections, run {run + 1}:"
                        f" {result.requests_per_s} req/s, p99 {result.p99_ms} ms"
                        f" (load {result.load_before})",
                        file=sys.stderr,
                    )
                    results.append(result)
    finally:
        for api in apis:
            api.service.stop()
    return results


def report(results: Sequence[IngressResult]) -> str:
    rows = [
        [
            r.client,
            r.connections,
            r.duration_s,
            r.requests,
            r.errors,
            r.jobs_created,
            r.requests_per_s,
            f"{r.p50_ms:g} / {r.p90_ms:g} / {r.p99_ms:g} / {r.max_ms:g}",
            f"{r.api_cpu_ms_per_req:g} / {r.postgres_cpu_ms_per_req:g}",
            r.load_before,
            r.auth,
            r.api_workers,
        ]
        for r in results
    ]
    lines = [
        format_table(
            [
                "client",
                "connections",
                "s",
                "requests",
                "errors",
                "jobs created",
                "req/s",
                "latency p50 / p90 / p99 / max ms",
                "CPU ms per job: API / PostgreSQL",
                "load",
                "auth",
                "API processes",
            ],
            rows,
        )
    ]
    for auth in sorted({r.auth for r in results}):
        for c in sorted({r.connections for r in results}):
            runs = [r for r in results if r.connections == c and r.auth == auth]
            rates = [r.requests_per_s for r in runs]
            p99 = [r.p99_ms for r in runs]
            cpu = [r.api_cpu_ms_per_req for r in runs]
            lines.append(
                f"auth {auth}, {c} connections: req/s best / median {best_and_median(rates)};"
                f" p99 best / median {best_and_median(p99, min)} ms;"
                f" API CPU ms per job best / median {best_and_median(cpu, min)}"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--connections", type=int, nargs="+", default=[64])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds before measuring")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--client",
        choices=["wrk", "python"],
        default="wrk",
        help="python: an asyncio httpx client on the same cores (understates the server)",
    )
    parser.add_argument(
        "--pool-size", type=int, help="RAGSERVE_DB_POOL_SIZE of the API (default: ragserve's)"
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        default=1,
        help="RAGSERVE_API_WORKERS of the API: HTTP processes on its port",
    )
    parser.add_argument(
        "--auth",
        choices=["off", "api_key", "both"],
        default="off",
        help="RAGSERVE_AUTH of the API; both: one API of each, measured in turn",
    )
    add_run_args(parser, profiled="the API")
    args = parser.parse_args(argv)
    if min(args.repeat, args.duration, args.warmup, *args.connections) < 1:
        parser.error("--repeat, --duration, --warmup and --connections must be positive")
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.exit(
            2,
            f"{parser.prog}: wrk not found; install it (Debian: apt-get install -y wrk)"
            " or pass --client python\n",
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    with scratch_dir("ragserve-bench-ingress-", keep=args.keep) as scratch:
        results = measure(args, scratch)
    finish_run(args, info, report(results), {"results": [asdict(r) for r in results]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
