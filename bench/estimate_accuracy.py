"""Accuracy of ``estimated_start_s``: predicted against actual wait under a steady load.

Starts, on free loopback ports, the mock LLM (``bench/mock_llm.py``, a fixed delay per answer:
``--ttft`` + the answer's tokens at ``--tps``) and one ``ragserve serve`` (embedded PostgreSQL in
a new folder, local embedder, the mock as LLM, ``RAGSERVE_WORKER_CONCURRENCY=--concurrency``),
ingests a small collection, and runs ``--concurrency`` warm-up questions to measure the service
time ``t`` of one job; the capacity is then ``concurrency / t`` jobs a second.

Then, for each ``--load`` (a share of that capacity), distinct questions arrive for
``--duration`` seconds, Poisson (``--arrivals poisson``, seeded) or evenly spaced (``fixed``),
each ``POST /v1/jobs``; the ``202`` body's ``estimated_start_s`` is the prediction, and the job's
``started_at - created_at`` (as the server recorded them) is the actual wait. Reported per load:
how many jobs had an estimate, p50/p90 of the actual wait, p50/p90 of the absolute error, and
p50/p90 of the relative error ``|predicted - actual| / actual`` over jobs that waited at least
``--relative-floor`` seconds (a near-zero wait makes any relative error meaningless).

Run (about 3 minutes)::

    python bench/estimate_accuracy.py                            # load 0.8, 90 s, 4 slots
    python bench/estimate_accuracy.py --load 0.8 1.1 --duration 60 --json /tmp/estimates.json
    python bench/estimate_accuracy.py --duration 3 --concurrency 2 --ttft 0.2   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import httpx

from _common import add_run_args, bench_parser, finish_run, format_table, load_now, machine_info
from concurrency import (
    COLLECTION,
    client,
    data_folder,
    ingest_collection,
    scratch_dir,
    start_mock_llm,
    start_ragserve,
)
from load_baselines import percentile

QUESTION = "How many days of annual leave do employees get? (load {load}, job {n}, {tag})"


@dataclass
class Prediction:
    job_id: str
    predicted_s: float | None
    actual_s: float | None = None


@dataclass
class LoadResult:
    load: float
    arrivals: str
    rate_per_s: float
    duration_s: float
    jobs: int
    estimated: int
    actual_p50_s: float
    actual_p90_s: float
    predicted_p50_s: float
    predicted_p90_s: float
    abs_error_p50_s: float
    abs_error_p90_s: float
    rel_error_jobs: int
    rel_error_p50: float | None
    rel_error_p90: float | None
    load_avg: str


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def wait_all(http: httpx.AsyncClient, job_ids: Sequence[str], timeout: float) -> None:
    """Until every job has finished (the actual start is known once it ran)."""
    deadline = time.monotonic() + timeout
    pending = list(job_ids)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} jobs not finished after {timeout:.0f} s")
        rows = await asyncio.gather(*(http.get(f"/v1/jobs/{j}") for j in pending[:50]))
        done = {r.json()["job_id"] for r in rows if r.json()["status"] == "succeeded"}
        failed = [r.json() for r in rows if r.json()["status"] in ("failed", "cancelled")]
        if failed:
            raise RuntimeError(f"job {failed[0]['job_id']} {failed[0]['status']}")
        pending = [j for j in pending if j not in done]
        if pending:
            await asyncio.sleep(0.5)


async def service_time_s(http: httpx.AsyncClient, slots: int, tag: str) -> float:
    """Mean start-to-finish time of ``slots`` questions run at once (one per slot)."""
    responses = await asyncio.gather(
        *(
            http.post(
                "/v1/jobs",
                json={
                    "query": QUESTION.format(load="warm-up", n=n, tag=tag),
                    "collection": COLLECTION,
                },
            )
            for n in range(slots)
        )
    )
    job_ids = [r.json()["job_id"] for r in responses]
    await wait_all(http, job_ids, timeout=300)
    rows = [(await http.get(f"/v1/jobs/{j}")).json() for j in job_ids]
    return statistics.mean(
        (_ts(r["finished_at"]) - _ts(r["started_at"])).total_seconds() for r in rows
    )


async def run_load(
    http: httpx.AsyncClient,
    load: float,
    rate: float,
    args: argparse.Namespace,
    draw: random.Random,
) -> LoadResult:
    """Questions at ``rate`` a second for ``args.duration`` seconds; predicted vs actual."""
    tag = uuid.uuid4().hex[:8]
    predictions: list[Prediction] = []

    async def submit(n: int) -> None:
        query = QUESTION.format(load=load, n=n, tag=tag)
        response = await http.post("/v1/jobs", json={"query": query, "collection": COLLECTION})
        response.raise_for_status()
        body = response.json()
        predictions.append(Prediction(body["job_id"], body["estimated_start_s"]))

    loop = asyncio.get_running_loop()
    start = loop.time()
    due = 0.0
    tasks: list[asyncio.Task[None]] = []
    n = 0
    while due < args.duration:
        delay = start + due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(submit(n)))
        n += 1
        due += draw.expovariate(rate) if args.arrivals == "poisson" else 1.0 / rate
    await asyncio.gather(*tasks)
    load_avg = load_now()
    await wait_all(http, [p.job_id for p in predictions], timeout=args.duration * 4 + 120)
    for p in predictions:
        row = (await http.get(f"/v1/jobs/{p.job_id}")).json()
        p.actual_s = (_ts(row["started_at"]) - _ts(row["created_at"])).total_seconds()
    return summarise(load, rate, args, predictions, load_avg)


def summarise(
    load: float,
    rate: float,
    args: argparse.Namespace,
    predictions: Sequence[Prediction],
    load_avg: str,
) -> LoadResult:
    known = [p for p in predictions if p.predicted_s is not None and p.actual_s is not None]
    actual = [p.actual_s for p in predictions if p.actual_s is not None]
    predicted = [p.predicted_s for p in known if p.predicted_s is not None]
    errors = [abs((p.predicted_s or 0.0) - (p.actual_s or 0.0)) for p in known]
    relative = [
        abs((p.predicted_s or 0.0) - p.actual_s) / p.actual_s
        for p in known
        if p.actual_s is not None and p.actual_s >= args.relative_floor
    ]

    def pct(values: Sequence[float], q: float) -> float:
        return percentile(list(values), q) if values else float("nan")

    return LoadResult(
        load=load,
        arrivals=args.arrivals,
        rate_per_s=rate,
        duration_s=args.duration,
        jobs=len(predictions),
        estimated=len(known),
        actual_p50_s=pct(actual, 50),
        actual_p90_s=pct(actual, 90),
        predicted_p50_s=pct(predicted, 50),
        predicted_p90_s=pct(predicted, 90),
        abs_error_p50_s=pct(errors, 50),
        abs_error_p90_s=pct(errors, 90),
        rel_error_jobs=len(relative),
        rel_error_p50=pct(relative, 50) if relative else None,
        rel_error_p90=pct(relative, 90) if relative else None,
        load_avg=load_avg,
    )


def report(service_s: float, slots: int, results: Sequence[LoadResult], floor: float) -> str:
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.0f} %"

    rows = [
        [
            f"{r.load:.2f}",
            f"{r.rate_per_s:.2f}",
            f"{r.jobs} ({r.estimated})",
            f"{r.actual_p50_s:.2f} / {r.actual_p90_s:.2f}",
            f"{r.predicted_p50_s:.2f} / {r.predicted_p90_s:.2f}",
            f"{r.abs_error_p50_s:.2f} / {r.abs_error_p90_s:.2f}",
            f"{share(r.rel_error_p50)} / {share(r.rel_error_p90)} ({r.rel_error_jobs})",
            r.load_avg,
        ]
        for r in results
    ]
    table = format_table(
        [
            "load",
            "arrivals/s",
            "jobs (with estimate)",
            "actual wait p50 / p90 s",
            "predicted p50 / p90 s",
            "abs error p50 / p90 s",
            f"rel error p50 / p90 (jobs waiting >= {floor:g} s)",
            "load avg",
        ],
        rows,
    )
    capacity = slots / service_s
    return (
        f"service time t = {service_s:.2f} s per job, {slots} slots:"
        f" capacity {capacity:.2f} jobs/s\n\n{table}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--load", type=float, nargs="+", default=[0.8], help="share of capacity")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of arrivals")
    parser.add_argument("--arrivals", choices=["poisson", "fixed"], default="poisson")
    parser.add_argument("--concurrency", type=int, default=4, help="worker job slots")
    parser.add_argument("--ttft", type=float, default=1.5, help="mock LLM seconds to 1st token")
    parser.add_argument("--tps", type=float, default=50.0, help="mock LLM tokens per second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--relative-floor", type=float, default=1.0, metavar="S")
    add_run_args(parser, "nothing (no profiling here)")
    args = parser.parse_args(argv)
    if args.concurrency < 2:
        parser.error("--concurrency: a worker runs at least 2 jobs at once")
    return args


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    await ingest_collection(url)
    async with client(url, 256) as http:
        service_s = await service_time_s(http, args.concurrency, uuid.uuid4().hex[:8])
        await asyncio.sleep(1.1)  # the API's estimates are at most a second old
        draw = random.Random(args.seed)
        results = []
        for load in args.load:
            rate = load * args.concurrency / service_s
            results.append(await run_load(http, load, rate, args, draw))
            print(f"load {load}: {results[-1].jobs} jobs done", file=sys.stderr)
    return {"service_s": service_s, "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    with scratch_dir("ragserve-estimates-", keep=args.keep) as scratch:
        mock = start_mock_llm(scratch, ttft=args.ttft, tps=args.tps)
        serve = None
        try:
            serve = start_ragserve(
                "serve",
                data_folder(scratch, "data"),
                scratch,
                llm_base_url=f"{mock.url}/v1",
                llm_model="mock",
                worker_concurrency=str(args.concurrency),
                cache_ttl_s="0",
            )
            measured = asyncio.run(measure(serve.url, args))
        finally:
            if serve is not None:
                serve.stop()
            mock.stop()
    results: list[LoadResult] = measured["results"]
    text = report(measured["service_s"], args.concurrency, results, args.relative_floor)
    finish_run(
        args,
        machine,
        text,
        {"service_s": measured["service_s"], "loads": [asdict(r) for r in results]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
