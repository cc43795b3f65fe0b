"""Send N questions at once to a baseline (or to ragserve) and report makespan and latency.

All N requests start together, as when a team's users ask at the same moment, so the numbers
show how each design queues work: makespan (first request sent to last answer received),
per-request latency p50 / p99 / max, and answers per second.

Run against a prototype baseline (``bench/prototype_baselines.py``)::

    python bench/load_baselines.py --url http://127.0.0.1:8101 --n 32

or against ragserve itself, through ``POST /v1/ask`` (``wait_s`` up to the timeout, then
polling if it answers 202), with questions made unique so the answer cache cannot help::

    python bench/load_baselines.py --url http://127.0.0.1:8000 --n 32 --target ragserve

``--json`` prints one JSON object instead of the table, for scripts that collect results.
Only addresses on this machine are meant as targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import httpx

Target = Literal["baseline", "ragserve"]
QUESTION = "How many days a week may employees work remotely? (request {i})"
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass(frozen=True)
class Outcome:
    """One request: whether it produced an answer, and its latency from the common start."""

    ok: bool
    latency_s: float
    error: str | None = None


@dataclass(frozen=True)
class Report:
    target: str
    url: str
    n: int
    ok: int
    failed: int
    makespan_s: float
    p50_s: float
    p99_s: float
    max_s: float
    answers_per_s: float
    first_error: str | None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def ask_baseline(http: httpx.AsyncClient, question: str) -> None:
    response = await http.post("/ask", json={"question": question})
    response.raise_for_status()


async def ask_ragserve(http: httpx.AsyncClient, question: str, wait_s: float) -> None:
    """``POST /v1/ask`` waits up to ``wait_s``; a 202 means still running: poll until done."""
    response = await http.post("/v1/ask", json={"query": question, "wait_s": wait_s})
    response.raise_for_status()
    job = response.json()
    while job.get("status") not in TERMINAL:
        await asyncio.sleep(0.5)
        response = await http.get(f"/v1/jobs/{job['job_id']}")
        response.raise_for_status()
        job = response.json()
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['job_id']} {job['status']}: {job.get('error')}")


async def one(
    http: httpx.AsyncClient, target: Target, i: int, start: float, timeout: float
) -> Outcome:
    question = QUESTION.format(i=i)
    try:
        if target == "baseline":
            await ask_baseline(http, question)
        else:
            await ask_ragserve(http, question, wait_s=timeout)
    except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        return Outcome(False, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
    return Outcome(True, time.perf_counter() - start)


async def run_load(url: str, n: int, target: Target, timeout: float) -> Report:
    """Start ``n`` requests together on one client sized to hold them all open."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    client_timeout = httpx.Timeout(timeout + 30, connect=10)
    async with httpx.AsyncClient(base_url=url, timeout=client_timeout, limits=limits) as http:
        start = time.perf_counter()
        outcomes = await asyncio.gather(*(one(http, target, i, start, timeout) for i in range(n)))
        makespan = time.perf_counter() - start
    latencies = [o.latency_s for o in outcomes if o.ok]
    errors = [o.error for o in outcomes if not o.ok]
    return Report(
        target=target,
        url=url,
        n=n,
        ok=len(latencies),
        failed=len(errors),
        makespan_s=round(makespan, 3),
        p50_s=round(percentile(latencies, 50), 3),
        p99_s=round(percentile(latencies, 99), 3),
        max_s=round(max(latencies, default=math.nan), 3),
        answers_per_s=round(len(latencies) / makespan, 3) if makespan > 0 else math.nan,
        first_error=errors[0] if errors else None,
    )


def format_report(report: Report) -> str:
    lines = [
        f"target     {report.target} at {report.url}",
        f"requests   {report.n} at once: {report.ok} answered, {report.failed} failed",
        f"makespan   {report.makespan_s:.2f} s",
        f"latency    p50 {report.p50_s:.2f} s   p99 {report.p99_s:.2f} s   "
        f"max {report.max_s:.2f} s",
        f"throughput {report.answers_per_s:.2f} answers/s",
    ]
    if report.first_error:
        lines.append(f"first error {report.first_error}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8101")
    parser.add_argument("--n", type=int, default=32, help="questions sent at once")
    parser.add_argument("--target", choices=("baseline", "ragserve"), default="baseline")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per question")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run_load(args.url.rstrip("/"), args.n, args.target, args.timeout))
    print(json.dumps(asdict(report)) if args.json else format_report(report))
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
