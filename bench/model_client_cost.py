"""Model clients' cost: CPU milliseconds of ragserve's LLM and embeddings clients per request.

Starts the mock LLM (``bench/mock_llm.py``, ttft ``--ttft`` + ``--tps`` tokens a second, so
tokens arrive one by one as from a real model) and the mock embeddings server of
``bench/concurrency.py``, each in its own process, then measures in this process the CPU time
(``time.process_time``) of ``OpenAIChatAnswerer.stream`` over ``--answers`` streamed answers
(``--concurrency`` at a time, 4 retrieved passages each) and of ``OpenAIEmbedder.embed_query``
over ``--queries`` queries, on uvloop as the worker runs. What it counts is the client side of
the worker's two model calls per answer job: building and sending the request, reading and
parsing the response, the connection handling. Before/after: run it with
``PYTHONPATH=<other tree>/src``.

Run (about half a minute)::

    python bench/model_client_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import uvloop

from _common import bench_parser, finish_run, format_table, load_now, machine_info
from concurrency import scratch_dir, start_mock_embeddings, start_mock_llm
from ragserve.kb.embeddings import OpenAIEmbedder
from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers.openai import OpenAIChatAnswerer

QUESTION = "How many days a week may employees work remotely? (request {i})"
PASSAGE = " ".join(["Employees may work remotely up to three days a week."] * 8)
CHUNKS = [RetrievedChunk(f"c{i}", f"d{i}", f"handbook-{i}.md", PASSAGE, 0.8) for i in range(4)]


async def cpu_ms_per_call(call: Callable[[int], Awaitable[object]], n: int, at_once: int) -> float:
    """CPU of this process per ``call``, ``n`` calls with ``at_once`` in flight, after a
    warm-up of ``at_once`` calls (connections opened, statements and caches warm)."""
    await asyncio.gather(*(call(i) for i in range(at_once)))
    gate = asyncio.Semaphore(at_once)

    async def gated(i: int) -> object:
        async with gate:
            return await call(i)

    start = time.process_time()
    await asyncio.gather(*(gated(i) for i in range(n)))
    return round(1000 * (time.process_time() - start) / n, 3)


async def measure(
    args: argparse.Namespace, llm_url: str, embeddings_url: str
) -> list[list[object]]:
    answerer = OpenAIChatAnswerer(f"{llm_url}/v1", "mock")
    embedder = OpenAIEmbedder(f"{embeddings_url}/v1", "mock-embeddings")

    async def answer(i: int) -> int:
        return len([piece async for piece in answerer.stream(QUESTION.format(i=i), CHUNKS)])

    async def embed(i: int) -> int:
        return len(await embedder.embed_query(QUESTION.format(i=i)))

    rows: list[list[object]] = []
    try:
        for run in range(1, args.repeat + 1):
            load = load_now()
            llm_ms = await cpu_ms_per_call(answer, args.answers, args.concurrency)
            embed_ms = await cpu_ms_per_call(embed, args.queries, args.concurrency)
            rows.append([run, llm_ms, embed_ms, load])
    finally:
        await answerer.aclose()
        await embedder.aclose()
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--answers", type=int, default=400)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--tps", type=float, default=50.0)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write JSON ('-' = stdout)")
    args = parser.parse_args(argv)
    if min(args.answers, args.queries, args.concurrency, args.repeat) < 1:
        parser.error("--answers, --queries, --concurrency and --repeat must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    with scratch_dir("ragserve-bench-model-clients-", keep=False) as scratch:
        llm = start_mock_llm(scratch, ttft=args.ttft, tps=args.tps)
        embeddings = start_mock_embeddings(scratch, 0.02)
        try:
            rows = uvloop.run(measure(args, llm.url, embeddings.url))
        finally:
            embeddings.stop()
            llm.stop()
    headers = ["run", "LLM client ms/streamed answer", "embeddings client ms/query", "load"]
    report = (
        f"{args.answers} streamed answers (mock LLM ttft {args.ttft} s + {args.tps} tok/s) and"
        f" {args.queries} embedded queries, {args.concurrency} at a time; CPU of the client"
        f" process\n\n{format_table(headers, rows)}"
    )
    finish_run(args, info, report, {"runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
