"""Retrieval quality per evaluation set and retrieval mode: recall@1/5/10 and MRR@10.

Sets (each ingested into a collection of its own through the real ``Ingestor``: chunker
800/100, local e5 embedder, PostgreSQL + pgvector + full-text index):

* ``squad``: SQuAD v1.1 dev paragraphs and questions; default the vendored sample
  (tests/data/squad, 288 paragraphs, 575 questions), ``--squad path/to/dev-v1.1.json``
  for the whole dev set (2,067 paragraphs; the ingest takes long: run it in the background);
* ``identifiers``: bench/data/identifiers.jsonl (codes, part/policy/invoice numbers, names that
  appear once; ``bench/data/make_identifier_set.py``);
* ``zh``: bench/data/zh_eval.jsonl (Chinese passages and questions, some in English);
* ``offtopic``: bench/data/offtopic.jsonl, questions about none of them, asked of the SQuAD
  collection: no recall, but the best chunk's cosine (what a "not found" threshold sees).

Modes (``--modes``): ``vector`` (HNSW only), ``hybrid`` (vector + full text, fused),
``hybrid+rerank`` (the hybrid top 4 x top_k reordered by ``bench/mock_rerank.py``, a lexical-
overlap mock: it shows the plumbing and an upper-bound-ish effect of a lexical reranker, not
what a cross-encoder would do). For the Chinese set the lexical index is also rebuilt with
character bigrams (``hybrid bigrams``) to compare with jieba words. Hits are deduplicated by
source (a question is found at rank r when its paragraph is the r-th distinct source)::

    python bench/retrieval_quality.py --json /tmp/rq.json
    python bench/retrieval_quality.py --sets squad --squad path/to/dev-v1.1.json
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import (
    TimedEmbedder,
    TimedStore,
    add_database_args,
    add_squad_arg,
    bench_database,
    format_table,
    load_now,
    load_squad,
    local_embedder,
    machine_info,
    read_jsonl,
    write_json,
)
from mock_rerank import create_app
from ragserve.db.pool import Database
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import Embedder, warm_up
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.lexical import Segmentation
from ragserve.kb.store import FUSION, RRF_K, VECTOR_WEIGHT, KnowledgeStore
from ragserve.rag.rerank import HttpReranker
from ragserve.rag.retrieval import Retriever
from ragserve.settings import Settings

HERE = Path(__file__).parent
ROOT = HERE.parent
SQUAD_SAMPLE = ROOT / "tests" / "data" / "squad"
KS = (1, 5, 10)
SETS = ("squad", "identifiers", "zh", "offtopic")
MODES = ("vector", "hybrid", "hybrid+rerank")


def first_rank(sources: Sequence[str], gold: str) -> int | None:
    """1-based rank of ``gold`` among the distinct ``sources``, or None."""
    seen: list[str] = []
    for source in sources:
        if source not in seen:
            seen.append(source)
        if source == gold:
            return len(seen)
    return None


def rank_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    n = len(ranks)
    out = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in KS}
    out["mrr@10"] = sum(1.0 / r for r in ranks if r is not None and r <= 10) / n
    return out


def load_set(
    name: str, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(passages with id/text, questions with question/doc_id) of one set."""
    if name == "squad":
        squad = load_squad(args.squad)
        corpus = [{"id": p.id, "title": p.title, "text": p.text} for p in squad.paragraphs]
        queries = [
            {"id": q.id, "question": q.question, "doc_id": q.doc_id} for q in squad.questions
        ]
        if args.queries and args.queries < len(queries):
            queries = random.Random(args.seed).sample(queries, args.queries)
        return corpus, queries
    rows = read_jsonl(
        HERE / "data" / ("identifiers.jsonl" if name == "identifiers" else "zh_eval.jsonl")
    )
    return [r for r in rows if r["kind"] == "passage"], [r for r in rows if r["kind"] == "query"]


class QueryVectors:
    """The embedder, with each question's vector computed once, up front, in batches (the
    local embedder batches questions that arrive together), and kept in ``path`` (beside the
    database of ``--data-dir``): every mode, and every rerun, of a large set then costs
    searches, not embeddings. Documents pass through to the embedder."""

    def __init__(self, inner: Embedder, path: Path | None) -> None:
        self.inner = inner
        self.path = path
        self.vectors: dict[str, list[float]] = {}
        if path is not None and path.exists():
            saved = np.load(path)
            self.vectors = dict(
                zip(saved["texts"].tolist(), saved["vectors"].tolist(), strict=True)
            )

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int | None:
        return self.inner.dim

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        if text not in self.vectors:
            self.vectors[text] = await self.inner.embed_query(text)
        return self.vectors[text]

    async def prefetch(self, texts: Sequence[str], step: int = 512) -> None:
        missing = sorted(set(texts) - set(self.vectors))
        start = time.perf_counter()
        for i in range(0, len(missing), step):
            part = missing[i : i + step]
            found = await asyncio.gather(*(self.inner.embed_query(t) for t in part))
            self.vectors.update(zip(part, found, strict=True))
            self.save()
            print(
                f"  query vectors: {i + len(part)}/{len(missing)} in"
                f" {time.perf_counter() - start:.0f}s, load {load_now()}",
                file=sys.stderr,
            )

    def save(self) -> None:
        if self.path is not None:
            texts = list(self.vectors)
            vectors = np.asarray([self.vectors[t] for t in texts], dtype=np.float32)
            with self.path.open("wb") as out:
                np.savez(out, texts=np.asarray(texts), vectors=vectors)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def ingest(ingestor: Ingestor, collection: str, corpus: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    items = [IngestItem(source=row["id"], text=row["text"]) for row in corpus]
    await ingestor.ingest(collection, items)
    seconds = time.perf_counter() - start
    print(
        f"  {collection}: {len(items)} passages in {seconds:.0f}s, load {load_now()}",
        file=sys.stderr,
    )
    return seconds


async def ranks_of(
    retriever: Retriever, collection: str, queries: list[dict[str, Any]], top_k: int
) -> tuple[list[int | None], list[float]]:
    ranks: list[int | None] = []
    seconds: list[float] = []
    for row in queries:
        start = time.perf_counter()
        hits = await retriever.retrieve(row["question"].strip(), collection=collection, top_k=top_k)
        seconds.append(time.perf_counter() - start)
        ranks.append(first_rank([h.source for h in hits], row["doc_id"]))
    return ranks, seconds


async def reindex_lexical(
    db: Database, collection: str, segmentation: Segmentation
) -> KnowledgeStore:
    """Rebuild ``collection``'s full-text column with another segmentation; its store."""
    store = KnowledgeStore(db, segmentation=segmentation)
    async with db.connection() as conn:
        await conn.execute("UPDATE chunks SET tsv = NULL WHERE collection = %s", (collection,))
        # The backfill counts the words of what it fills and writes their postings: start the
        # collection's count and postings afresh.
        await conn.execute("DELETE FROM collection_words WHERE collection = %s", (collection,))
        await conn.execute("DELETE FROM chunk_lexemes WHERE collection = %s", (collection,))
    await store.backfill_lexical()
    return store


async def evaluate_set(
    name: str, args: argparse.Namespace, db: Database, embedder: Embedder, reranker: HttpReranker
) -> dict[str, Any]:
    corpus, queries = load_set(name, args)
    store = TimedStore(db)
    chunker = Chunker(Settings().chunk_size, Settings().chunk_overlap)
    out: dict[str, Any] = {"passages": len(corpus), "questions": len(queries)}
    out["ingest_s"] = await ingest(Ingestor(store, embedder, chunker), name, corpus)
    cache = args.data_dir / f"query-vectors-{name}.npz" if args.data_dir else None
    cached = QueryVectors(embedder, cache)
    await cached.prefetch([row["question"].strip() for row in queries])
    modes: list[tuple[str, Retriever]] = [
        ("vector", Retriever(store, cached, mode="vector")),
        (
            f"hybrid ({FUSION} {VECTOR_WEIGHT if FUSION == 'convex' else RRF_K}, default)",
            Retriever(store, cached, mode="hybrid"),
        ),
        ("hybrid+rerank", Retriever(store, cached, mode="hybrid", reranker=reranker)),
    ]
    runs = [(label, r) for label, r in modes if label.partition(" ")[0] in args.modes]
    for spec in args.fusions:  # other fusions, for the record
        fusion, _, weight = spec.partition(":")
        other = KnowledgeStore(db, fusion=fusion, vector_weight=float(weight or VECTOR_WEIGHT))  # type: ignore[arg-type]
        runs.append((f"hybrid ({fusion} {weight or RRF_K})", Retriever(other, cached)))
    kinds = [row["doc_id"].rsplit("-", 1)[0] for row in queries]  # identifiers: error-007
    for label, retriever in runs:
        ranks, seconds = await ranks_of(retriever, name, queries, args.top_k)
        out[label] = rank_metrics(ranks)
        out[label]["retrieve_ms_mean"] = 1000 * statistics.fmean(seconds)
        if name == "identifiers":
            out.setdefault("recall@5 by kind", {})[label] = {
                kind: rank_metrics([r for r, k in zip(ranks, kinds, strict=True) if k == kind])[
                    "recall@5"
                ]
                for kind in sorted(set(kinds))
            }
    if name == "zh":
        for segmentation in ("bigrams", "jieba"):  # jieba last: leaves the index as shipped
            other = await reindex_lexical(db, name, segmentation)
            ranks, _ = await ranks_of(
                Retriever(other, cached, mode="hybrid"), name, queries, args.top_k
            )
            out[f"hybrid {segmentation}"] = rank_metrics(ranks)
    return out


async def evaluate_offtopic(db: Database, embedder: Embedder, collection: str) -> dict[str, Any]:
    """The best chunk's cosine for off-topic questions (and for on-topic ones, to compare)."""
    store = KnowledgeStore(db)
    out: dict[str, Any] = {}
    off = [r["question"] for r in read_jsonl(HERE / "data" / "offtopic.jsonl")]
    on = [q.question for q in load_squad(SQUAD_SAMPLE).questions][: len(off) * 4]
    for label, questions in (("offtopic", off), ("squad sample", on)):
        for mode in ("vector", "hybrid"):
            retriever = Retriever(store, embedder, mode=mode)  # type: ignore[arg-type]
            best = [
                (await retriever.retrieve(q, collection=collection, top_k=1))[0].score
                for q in questions
            ]
            out[f"{label} {mode}"] = {
                "n": len(best),
                "top1_cos_mean": statistics.fmean(best),
                "top1_cos_max": max(best),
                "top1_cos_min": min(best),
            }
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    results: dict[str, Any] = {"machine": machine_info(), "sets": {}}
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), timeout=10)
    reranker = HttpReranker("http://mock-rerank/v1", client=client)
    async with bench_database(args) as db:
        embedder = TimedEmbedder(local_embedder(settings))
        await warm_up(embedder.inner)
        try:
            for name in args.sets:
                if name == "offtopic":
                    if "squad" not in args.sets:
                        sys.exit("the offtopic set is asked of the squad collection: add squad")
                    results["offtopic"] = await evaluate_offtopic(db, embedder, "squad")
                    continue
                print(f"set {name} ...", file=sys.stderr)
                results["sets"][name] = await evaluate_set(name, args, db, embedder, reranker)
        finally:
            await embedder.aclose()
            await reranker.aclose()
    results["rerank_failures"] = reranker.failures
    results["load_at_end"] = load_now()
    return results


def report(results: dict[str, Any]) -> str:
    rows = []
    for name, r in results["sets"].items():
        for label, m in r.items():
            if isinstance(m, dict) and "recall@1" in m:
                rows.append(
                    [
                        name,
                        label,
                        r["questions"],
                        *(m[f"recall@{k}"] for k in KS),
                        m["mrr@10"],
                        f"{m['retrieve_ms_mean']:.0f}" if "retrieve_ms_mean" in m else "",
                    ]
                )
    text = format_table(["set", "mode", "questions", "R@1", "R@5", "R@10", "MRR@10", "ms/q"], rows)
    for name, r in results["sets"].items():
        if "recall@5 by kind" in r:
            by_kind = r["recall@5 by kind"]
            kinds = sorted(next(iter(by_kind.values())))
            text += f"\n\n{name}, recall@5 by kind:\n" + format_table(
                ["mode", *kinds], [[label, *(v[k] for k in kinds)] for label, v in by_kind.items()]
            )
    if "offtopic" in results:
        off = [
            [k, v["n"], v["top1_cos_mean"], v["top1_cos_min"], v["top1_cos_max"]]
            for k, v in results["offtopic"].items()
        ]
        text += "\n\n" + format_table(["questions", "n", "top-1 cos mean", "min", "max"], off)
    m = results["machine"]
    return (
        f"{text}\n\npassages: { {k: v['passages'] for k, v in results['sets'].items()} }"
        f"; rerank failures {results['rerank_failures']}\nmachine: {m['cpus']} CPUs,"
        f" load at start {m['loadavg']}, at end {results['load_at_end']}; {m['date']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {SETS}")
    add_squad_arg(parser)
    parser.add_argument(
        "--queries", type=int, default=0, help="a fixed sample of N SQuAD questions"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument(
        "--fusions", default="rrf,convex:0.3,convex:0.7", help="other fusions to measure too"
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {MODES}")
    add_database_args(parser)
    args = parser.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    args.fusions = [s for s in args.fusions.split(",") if s]
    args.modes = [s for s in args.modes.split(",") if s]
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}")
    if unknown := set(args.sets) - set(SETS):
        parser.error(f"unknown sets {sorted(unknown)}")
    results = asyncio.run(run(args))
    print(report(results))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
