"""Retrieval quality of the real pipeline on SQuAD v1.1 dev: recall@1/5/10 and MRR.

Every one of the 2,067 paragraphs is ingested as one document (source = its id) through the real
``Ingestor`` (chunker 800/100, local e5 embedder, PostgreSQL + pgvector), then every question goes
through the real ``Retriever`` (embed the query, HNSW search) with ``top_k=10``. Hits are
deduplicated by source, keeping the best rank, so a question is found at rank r when its
paragraph is the r-th distinct source (``chunk rank`` columns: the rank among the raw chunks).
As a control, the same stored vectors are also ranked exactly (numpy, no index): the difference
is what the HNSW index costs, the difference to ``bench/embedder_recall.py`` (whole paragraphs,
no database) is what chunking costs.

The ingest takes minutes on 2 cores (the model embeds a few passages per second): run it in the
background. ``--data-dir`` keeps the database, and a second run with the same folder finds every
document ``unchanged`` and only runs the questions::

    python bench/retrieval_quality.py --squad /path/to/dev-v1.1.json --json /tmp/rq.json
    python bench/retrieval_quality.py --squad /path/to/dev-v1.1.json --data-dir /tmp/rq
    python bench/retrieval_quality.py --queries 500          # a fixed sample of 500 questions
    python bench/retrieval_quality.py --docs 5 --queries 10  # smoke: 5 paragraphs, 10 questions

``--squad`` defaults to the small sample vendored in ``tests/data/squad``.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from _common import (
    Paragraph,
    Question,
    TimedEmbedder,
    TimedStore,
    add_squad_arg,
    bench_database,
    bench_parser,
    embedder_info,
    format_table,
    latency_summary,
    load_now,
    load_squad,
    local_embedder,
    machine_info,
    machine_line,
    run_kb_benchmark,
    vector_stats,
)
from ragserve.db.pool import Database
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import warm_up
from ragserve.kb.ingest import DocumentResult, IngestItem, Ingestor
from ragserve.rag.retrieval import Retriever
from ragserve.settings import Settings

KS = (1, 5, 10)


@dataclass
class RecordingEmbedder(TimedEmbedder):
    """Also keeps every query vector, for the exact-search control."""

    query_vectors: list[list[float]] = field(default_factory=list)

    async def embed_query(self, text: str) -> list[float]:
        vector = await super().embed_query(text)
        self.query_vectors.append(vector)
        return vector


# --------------------------------------------------------------------------- metrics


def first_rank(sources: Sequence[str], gold: str, *, dedupe: bool) -> int | None:
    """1-based rank of ``gold`` in ``sources`` (by distinct source when ``dedupe``), or None."""
    seen: list[str] = []
    for index, source in enumerate(sources):
        if dedupe:
            if source in seen:
                continue
            seen.append(source)
        if source == gold:
            return len(seen) if dedupe else index + 1
    return None


def rank_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    n = len(ranks)
    out = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in KS}
    out["mrr@10"] = sum(1.0 / r for r in ranks if r is not None and r <= 10) / n
    return out


# --------------------------------------------------------------------------- phases


async def ingest_corpus(
    ingestor: Ingestor, collection: str, corpus: Sequence[Paragraph]
) -> dict[str, Any]:
    items = [IngestItem(source=p.id, text=p.text, metadata={"title": p.title}) for p in corpus]
    statuses: collections.Counter[str] = collections.Counter()
    chunks = 0
    start = time.perf_counter()

    def progress(result: DocumentResult) -> None:
        nonlocal chunks
        statuses[result.status] += 1
        chunks += result.chunks
        done = sum(statuses.values())
        if done % 100 == 0 or done == len(items):
            rate = chunks / (time.perf_counter() - start)
            print(
                f"  ingested {done}/{len(items)} docs, {chunks} chunks ({rate:.1f}/s)"
                f" load {load_now()}",
                file=sys.stderr,
            )

    await ingestor.ingest(collection, items, on_document=progress)
    return {
        "seconds": time.perf_counter() - start,
        "documents": dict(statuses),
        "chunks_written": chunks,
    }


async def run_questions(
    retriever: Retriever, collection: str, queries: Sequence[Question], top_k: int
) -> tuple[list[int | None], list[int | None], float]:
    doc_ranks: list[int | None] = []
    chunk_ranks: list[int | None] = []
    start = time.perf_counter()
    for index, question in enumerate(queries, 1):
        hits = await retriever.retrieve(question.question, collection=collection, top_k=top_k)
        sources = [hit.source for hit in hits]
        doc_ranks.append(first_rank(sources, question.doc_id, dedupe=True))
        chunk_ranks.append(first_rank(sources, question.doc_id, dedupe=False))
        if index % 1000 == 0:
            print(f"  {index}/{len(queries)} questions, load {load_now()}", file=sys.stderr)
    return doc_ranks, chunk_ranks, time.perf_counter() - start


async def exact_ranks(
    db: Database, collection: str, query_vectors: list[list[float]], gold: list[str], top_k: int
) -> tuple[list[int | None], dict[str, float]]:
    """The same stored chunk vectors ranked by exact cosine (numpy): the no-index control.

    Also describes the vectors (``vector_stats``): the synthetic data of
    ``bench/retrieval_latency.py`` is calibrated on these figures."""
    async with db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT source, embedding FROM chunks WHERE collection = %s", (collection,)
            )
        ).fetchall()
    sources = np.asarray([r["source"] for r in rows])
    matrix = np.stack([r["embedding"].to_numpy().astype(np.float32) for r in rows])
    queries = np.asarray(query_vectors, dtype=np.float32)
    ranks: list[int | None] = []
    for start in range(0, len(queries), 1024):
        scores = queries[start : start + 1024] @ matrix.T
        top = np.argsort(-scores, axis=1)[:, :top_k]
        for offset, row in enumerate(top):
            ranks.append(first_rank(list(sources[row]), gold[start + offset], dedupe=True))
    stats = vector_stats(matrix, queries, np.random.default_rng(0))
    return ranks, {"chunks": float(len(rows)), **stats}


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    squad = load_squad(args.squad)
    if args.docs:  # a smaller corpus, for trying the script out: its first N paragraphs
        squad = squad.first(args.docs)
    corpus, queries = squad.paragraphs, squad.questions
    if args.queries and args.queries < len(queries):
        queries = random.Random(args.seed).sample(queries, args.queries)
    settings = Settings()
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
    results: dict[str, Any] = {"machine": machine_info(), "chunker": repr(chunker)}
    async with bench_database(args) as db:
        embedder = RecordingEmbedder(local_embedder(settings))
        results["embedder"] = embedder_info(embedder.inner)
        start = time.perf_counter()
        await warm_up(embedder.inner)
        results["model_load_s"] = time.perf_counter() - start
        store = TimedStore(db)
        try:
            ingest = await ingest_corpus(
                Ingestor(store, embedder, chunker), args.collection, corpus
            )
            ingest["embed_seconds"] = embedder.documents.seconds
            ingest["chunks_embedded"] = embedder.documents.items
            results["ingest"] = ingest
            results["load_after_ingest"] = load_now()
            retriever = Retriever(store, embedder)
            doc_ranks, chunk_ranks, wall = await run_questions(
                retriever, args.collection, queries, args.top_k
            )
            gold = [question.doc_id for question in queries]
            exact, stats = await exact_ranks(
                db, args.collection, embedder.query_vectors, gold, args.top_k
            )
        finally:
            await embedder.aclose()
    results["questions"] = {
        "n": len(queries),
        "seconds": wall,
        "embed_query_seconds": embedder.queries.seconds,
        "search_seconds": sum(store.search_seconds),
        "search_latency": latency_summary(store.search_seconds),
        "retriever_hnsw": rank_metrics(doc_ranks),
        "retriever_hnsw_chunk_rank": rank_metrics(chunk_ranks),
        "exact_same_vectors": rank_metrics(exact),
    }
    results["chunks"] = int(stats.pop("chunks"))
    results["vectors"] = stats
    results["load_at_end"] = load_now()
    return results


def ingest_rows(ing: dict[str, Any]) -> list[list[Any]]:
    wall_s, embed_s, n = ing["seconds"], ing["embed_seconds"], ing["chunks_embedded"]
    label = f"ingest, wall (documents {ing['documents']})"
    if n == 0:  # everything was already there (--data-dir of an earlier run)
        return [[label, wall_s, "nothing embedded", ""]]
    return [
        [label, wall_s, f"{1000 * wall_s / n:.0f} ms/chunk", f"{n / wall_s:.2f} chunks/s"],
        [
            "  of which embed_documents",
            embed_s,
            f"{1000 * embed_s / n:.0f} ms/chunk",
            f"{n / embed_s:.2f} chunks/s",
        ],
    ]


def report(results: dict[str, Any]) -> str:
    q = results["questions"]
    rows = [
        [name, q["n"], *(q[key][f"recall@{k}"] for k in KS), q[key]["mrr@10"]]
        for name, key in (
            ("Retriever (HNSW), distinct sources", "retriever_hnsw"),
            ("Retriever (HNSW), chunk rank", "retriever_hnsw_chunk_rank"),
            ("exact cosine on the same vectors", "exact_same_vectors"),
        )
    ]
    quality = format_table(["ranking", "questions", "R@1", "R@5", "R@10", "MRR@10"], rows)
    lat = q["search_latency"]
    timing = format_table(
        ["phase", "seconds", "per item", "rate"],
        [
            *ingest_rows(results["ingest"]),
            [
                "questions, wall",
                q["seconds"],
                f"{1000 * q['seconds'] / q['n']:.1f} ms/q",
                f"{q['n'] / q['seconds']:.1f} q/s",
            ],
            [
                "  of which embed_query",
                q["embed_query_seconds"],
                f"{1000 * q['embed_query_seconds'] / q['n']:.1f} ms/q",
                "",
            ],
            [
                "  of which store.search",
                q["search_seconds"],
                f"p50 {lat['p50_ms']:.1f} / p99 {lat['p99_ms']:.1f} ms",
                "",
            ],
        ],
    )
    machine = machine_line(
        results["machine"],
        after_ingest=results["load_after_ingest"],
        at_end=results["load_at_end"],
    )
    return (
        f"{quality}\n\n{timing}\n\nchunks in the collection: {results['chunks']}"
        f" ({results['chunker']})"
        f"; model load {results['model_load_s']:.2f}s\nembedder: {results['embedder']}"
        f"\nvectors: { {k: round(v, 3) for k, v in results['vectors'].items()} }\n{machine}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    add_squad_arg(parser)
    parser.add_argument("--queries", type=int, default=0, help="a fixed sample of N questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", type=int, default=0, help="only the first N paragraphs (trial)")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--collection", default="squad-dev")
    return run_kb_benchmark(parser, run, report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
