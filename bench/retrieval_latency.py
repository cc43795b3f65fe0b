"""Top-k vector (or hybrid) search latency through ``KnowledgeStore.search`` at 10k and 100k chunks.

No model is involved: the chunks get synthetic 384-dimensional unit vectors (the local e5
model's size) shaped like real embeddings rather than uniform noise, which would be both easier
to compress and harder to index than real data:

* every vector shares a common direction (embedding models are anisotropic: two unrelated texts
  still have a cosine of about 0.6), plus the centroid of one of ``n / cluster_size`` topics,
  plus noise whose per-dimension spread decays as a power law (real embeddings have most of
  their variance in a few directions);
* each query is an existing chunk moved by fresh noise (cosine about 0.9 to it), so it has a true
  nearest neighbour and a neighbourhood, like a question and its passage.

Rows are written the way ``replace_document`` writes them (a collection row, documents, chunks
with ``embedding_dim = 384``), with binary COPY; the HNSW index is then built by
``ensure_collection`` itself (timed). Latency is measured from Python through the pool, one
query at a time after a warm-up: what a worker sees. Recall@10 of the index is checked against
exact numpy search over the same vectors, and the plan is printed once to show the index is used.

    python bench/retrieval_latency.py --json /tmp/latency.json
    python bench/retrieval_latency.py --sizes 10000 --queries 300     # quick
    python bench/retrieval_latency.py --sizes 300 --queries 20 --warmup 5 --recall-queries 10

Chunk texts come from ``--squad`` (default: the sample vendored in ``tests/data/squad``; the
full dev set, e.g. ``--squad path/to/squad-dev``, repeats each text less often).

    python bench/retrieval_latency.py --retrieval vector,hybrid --sizes 10000,100000

With ``--retrieval hybrid`` the timed searches are hybrid ones: the chunk texts (SQuAD
paragraphs, repeated) are indexed for full text (and counted in ``collection_words``, as the
store does) and each query vector comes with a real SQuAD question as its text; recall@10 and
the plan stay those of the vector half (the hybrid plan is printed too). With
``--retrieval vector,hybrid`` each query is timed in both modes, one after the other, so both
see the same load.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from psycopg.types.json import Jsonb

from _common import (
    add_squad_arg,
    bench_database,
    bench_parser,
    format_table,
    latency_summary,
    load_now,
    load_squad,
    machine_info,
    machine_line,
    run_kb_benchmark,
    server_settings,
    vector_stats,
)
from ragserve.db.pool import Connection, Database
from ragserve.kb.lexical import TS_CONFIG
from ragserve.kb.store import Collection, KnowledgeStore, add_postings, add_word_counts
from ragserve.names import DEFAULT_TENANT

DIM = 384
INDEX = f"chunks_embedding_{DIM}_hnsw"
EMBEDDER = "bench:synthetic-384"
VECTOR_LITERAL = re.compile(r"'\[[-0-9.e, ]{40,}\]'")
PG_SETTINGS = (
    "server_version",
    "shared_buffers",
    "maintenance_work_mem",
    "work_mem",
    "max_parallel_maintenance_workers",
    "hnsw.iterative_scan",
)


# --------------------------------------------------------------------------- synthetic data


@dataclass(frozen=True)
class Shape:
    """Calibrated on the real e5 vectors of the SQuAD dev chunks (see ``docs/BENCHMARKS.md``)."""

    cluster_size: int = 20  # chunks per topic
    common: float = 2.2  # weight of the direction all vectors share
    spread: float = 0.9  # noise norm relative to a topic centroid
    decay: float = 0.5  # noise variance of dimension i falls as (i + 1) ** -decay
    query_noise: float = 0.55  # noise norm added to a chunk to make a query


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def decaying_noise(rng: np.random.Generator, n: int, decay: float) -> np.ndarray:
    """Noise of expected norm 1 whose variance decays over the dimensions as (i+1)^-decay."""
    scale = np.arange(1, DIM + 1) ** (-decay / 2)
    scale /= np.sqrt(np.sum(scale**2))
    return rng.standard_normal((n, DIM)).astype(np.float32) * scale.astype(np.float32)


def common_direction() -> np.ndarray:
    """The direction every vector of one model shares (the same for all collections)."""
    return unit(np.random.default_rng(384).standard_normal(DIM))


def make_vectors(rng: np.random.Generator, n: int, shape: Shape) -> np.ndarray:
    common = common_direction()
    centroids = unit(rng.standard_normal((max(1, n // shape.cluster_size), DIM)))
    labels = rng.integers(len(centroids), size=n)
    noise = decaying_noise(rng, n, shape.decay)
    return unit(shape.common * common + centroids[labels] + shape.spread * noise)


def make_queries(rng: np.random.Generator, vectors: np.ndarray, n: int, shape: Shape) -> np.ndarray:
    picks = rng.integers(len(vectors), size=n)
    return unit(vectors[picks] + shape.query_noise * decaying_noise(rng, n, shape.decay))


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


# --------------------------------------------------------------------------- loading


async def reset(db: Database, name: str) -> None:
    """Drop the index and the collection, so rows are bulk-loaded without index upkeep."""
    async with db.connection() as conn:
        await conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
        await conn.execute("DELETE FROM collections WHERE name = %s", (name,))
        await conn.execute("VACUUM chunks, chunk_lexemes")


async def bulk_load(
    db: Database, name: str, vectors: np.ndarray, texts: list[str], n_docs: int
) -> list[str]:
    """Write collection, documents and chunks as ``replace_document`` would; return chunk ids."""
    doc_ids = [uuid.uuid4() for _ in range(n_docs)]
    chunk_ids = [uuid.uuid4() for _ in range(len(vectors))]
    per_doc = -(-len(vectors) // n_docs)
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO collections (name, embedder, embedding_dim) VALUES (%s, %s, %s)",
            (name, EMBEDDER, DIM),
        )
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO documents (id, collection, source, content_hash, metadata,"
                " chunk_count) VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (d, name, f"doc-{i:04d}.txt", f"{i:064x}", Jsonb({"n": i}), per_doc)
                    for i, d in enumerate(doc_ids)
                ],
            )
        await copy_chunks(conn, name, doc_ids, chunk_ids, vectors, texts)
        # The full-text column as replace_document fills it (English text: no segmentation),
        # and the collection's postings and word counts as the store keeps them.
        await conn.execute(
            f"UPDATE chunks SET tsv = to_tsvector('{TS_CONFIG}', text) WHERE collection = %s",
            (name,),
        )
        await add_word_counts(conn, await add_postings(conn, "c.collection = %s", (name,)))
    return [str(c) for c in chunk_ids]


async def copy_chunks(
    conn: Connection,
    name: str,
    doc_ids: list[uuid.UUID],
    chunk_ids: list[uuid.UUID],
    vectors: np.ndarray,
    texts: list[str],
) -> None:
    per_doc = -(-len(vectors) // len(doc_ids))
    sql = (
        "COPY chunks (id, document_id, collection, source, ordinal, text, metadata,"
        " embedding_dim, embedding) FROM STDIN WITH (FORMAT BINARY)"
    )
    async with conn.cursor() as cur, cur.copy(sql) as copy:
        copy.set_types(["uuid", "uuid", "text", "text", "int4", "text", "jsonb", "int4", "vector"])
        for i, vector in enumerate(vectors):
            doc = i // per_doc
            await copy.write_row(
                (
                    chunk_ids[i],
                    doc_ids[doc],
                    name,
                    f"doc-{doc:04d}.txt",
                    i % per_doc,
                    texts[i % len(texts)],
                    Jsonb({"n": doc}),
                    DIM,
                    vector,
                )
            )


async def loaded_chunk_ids(db: Database, name: str, n: int) -> list[str]:
    """The ids of a collection of ``n`` chunks left by an earlier run (``--reuse`` with
    ``--data-dir``), in the order they were loaded (the same seed makes the same vectors);
    empty if there is none of that size."""
    async with db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id::text FROM chunks WHERE collection = %s ORDER BY source, ordinal",
                (name,),
            )
        ).fetchall()
    return [r["id"] for r in rows] if len(rows) == n else []


async def index_size(db: Database) -> int:
    async with db.connection() as conn:
        row = await (
            await conn.execute("SELECT pg_relation_size(%s::regclass) AS b", (INDEX,))
        ).fetchone()
    return int(row["b"]) if row else 0


# --------------------------------------------------------------------------- the plan


class _RecordingConnection:
    """Forwards to a real connection, remembering each statement (to EXPLAIN it later)."""

    def __init__(self, conn: Connection, log: list[tuple[str, Any]]) -> None:
        self._conn = conn
        self._log = log

    async def execute(self, query: str, params: Any = None, **options: Any) -> Any:
        # ``options``: what the store passes through (e.g. ``prepare=False``).
        self._log.append((query, params))
        return await self._conn.execute(query, params, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class RecordingDatabase:
    """Enough of ``Database`` for ``KnowledgeStore.search``, recording the SQL it runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.log: list[tuple[str, Any]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_RecordingConnection]:
        async with self.db.connection() as conn:
            yield _RecordingConnection(conn, self.log)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_RecordingConnection]:
        async with self.db.transaction() as conn:
            yield _RecordingConnection(conn, self.log)


async def explain_search(
    db: Database, collection: Collection, query: np.ndarray, ef: int, text: str | None = None
) -> str:
    """The plan of exactly the SQL ``search`` runs (same settings), with actual timings; with
    ``text``, of the hybrid search."""
    recorder = RecordingDatabase(db)
    await KnowledgeStore(cast(Database, recorder)).search(
        collection, query, top_k=10, ef_search=ef, query_text=text
    )
    async with db.transaction() as conn:
        for sql, params in recorder.log:
            if sql.startswith("SET"):
                await conn.execute(sql, params)
            else:
                rows = await (
                    await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
                ).fetchall()
    plan = "\n".join(str(next(iter(r.values()))) for r in rows)
    return VECTOR_LITERAL.sub(f"'[{DIM} floats]'", plan)


# --------------------------------------------------------------------------- measuring


async def measure_latency(
    store: KnowledgeStore,
    collection: Collection,
    queries: np.ndarray,
    warmup: int,
    ef: int,
    questions: Sequence[str],
    modes: Sequence[str],
) -> dict[str, list[float]]:
    """Seconds per search, per retrieval mode. With several modes each query is searched in
    every mode, one after the other, so that all modes see the same load (the machine is
    shared); hybrid searches take the question of the same index as their text."""

    def text(mode: str, i: int) -> str | None:
        return questions[i % len(questions)] if mode == "hybrid" else None

    for i, q in enumerate(queries[:warmup]):
        for mode in modes:
            await store.search(collection, q, top_k=10, ef_search=ef, query_text=text(mode, i))
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    for i, q in enumerate(queries[warmup:], warmup):
        for mode in modes:
            start = time.perf_counter()
            await store.search(collection, q, top_k=10, ef_search=ef, query_text=text(mode, i))
            seconds[mode].append(time.perf_counter() - start)
    return seconds


async def measure_recall(
    store: KnowledgeStore,
    collection: Collection,
    queries: np.ndarray,
    truth: np.ndarray,
    chunk_ids: list[str],
    ef: int,
) -> float:
    found = 0
    for q, expected in zip(queries, truth, strict=True):
        hits = await store.search(collection, q, top_k=10, ef_search=ef)
        found += len({h.chunk_id for h in hits} & {chunk_ids[i] for i in expected})
    return found / (10 * len(queries))


async def measure(
    db: Database,
    collection: Collection,
    queries: np.ndarray,
    recall: tuple[np.ndarray, np.ndarray, list[str]],
    ef: int,
    warmup: int,
    questions: Sequence[str] = (),
    modes: Sequence[str] = ("vector",),
) -> dict[str, Any]:
    """Latency summary per mode, recall@10 against exact search and the plan, at one
    ``ef_search``.

    Recall and ``plan`` are of the vector search (the exact answer is only known for it); with
    the hybrid mode, ``hybrid_plan`` is the hybrid statement's plan."""
    store = KnowledgeStore(db)
    recall_queries, truth, chunk_ids = recall
    load = load_now()
    seconds = await measure_latency(store, collection, queries, warmup, ef, questions, modes)
    generic = await generic_plans(db)
    found = await measure_recall(store, collection, recall_queries, truth, chunk_ids, ef)
    plan = await explain_search(db, collection, queries[0], ef)
    out = {
        "modes": {mode: latency_summary(s) for mode, s in seconds.items()},
        "recall@10": found,
        "load": f"{load} -> {load_now()}",
        **generic,
        "plan_uses_index": INDEX in plan,
        "plan_kind": plan_kind(plan),
        "plan": plan,
    }
    if "hybrid" in modes:
        out["hybrid_plan"] = await explain_search(db, collection, queries[0], ef, questions[0])
    return out


async def generic_plans(db: Database) -> dict[str, int]:
    """How often PostgreSQL ran the search as a generic plan so far (psycopg prepares a
    statement after 5 runs; after 5 more, the server may stop planning per collection)."""
    async with db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT coalesce(sum(generic_plans), 0)::int AS generic_plans,"
                " coalesce(sum(custom_plans), 0)::int AS custom_plans"
                " FROM pg_prepared_statements WHERE statement LIKE 'WITH nearest%%'"
            )
        ).fetchone()
    return dict(row) if row else {}


def plan_kind(plan: str) -> str:
    """The scan that feeds the top-k: the HNSW index, another index, or a sequential scan."""
    if INDEX in plan:
        return "HNSW index"
    found = re.search(r"(Seq Scan|Bitmap Heap Scan|Index Scan using \w+|Index Only Scan)", plan)
    return found.group(1) if found else "?"


async def run_size(
    db: Database, args: argparse.Namespace, n: int, texts: list[str]
) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed + n)
    shape = Shape(cluster_size=args.cluster_size)
    vectors = make_vectors(rng, n, shape)
    queries = make_queries(rng, vectors, args.warmup + args.queries, shape)
    recall_queries = make_queries(rng, vectors, args.recall_queries, shape)
    out: dict[str, Any] = {"chunks": n, "data": vector_stats(vectors, queries, rng)}
    start = time.perf_counter()
    chunk_ids = await loaded_chunk_ids(db, args.collection, n) if args.reuse else []
    if not chunk_ids:
        await reset(db, args.collection)
        chunk_ids = await bulk_load(db, args.collection, vectors, texts, args.documents)
        async with db.connection() as conn:
            await conn.execute("VACUUM ANALYZE chunks")
    async with db.connection() as conn:
        # What autovacuum does soon after a load or the fill of migration 0012 (a no-op when it
        # has): the visibility map, without which the postings' index-only scans visit the heap.
        await conn.execute("VACUUM ANALYZE chunk_lexemes")
    out["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    collection = await KnowledgeStore(db).ensure_collection(
        args.collection, EMBEDDER, DIM, tenant=DEFAULT_TENANT
    )
    out["index_build_s"] = time.perf_counter() - start
    out["index_mb"] = await index_size(db) / 2**20
    truth = exact_top_k(vectors, recall_queries, 10)
    out["by_ef_search"] = {}
    for ef in args.ef_search:
        print(f"  {n} chunks, ef_search={ef}: load {load_now()}", file=sys.stderr)
        out["by_ef_search"][ef] = await measure(
            db,
            collection,
            queries,
            (recall_queries, truth, chunk_ids),
            ef,
            args.warmup,
            args.questions,
            args.retrieval,
        )
    if args.small_collection:
        big = (collection, queries, (recall_queries, truth, chunk_ids))
        out["small_collection"] = await run_small(db, args, texts, shape, big)
    return out


async def run_small(
    db: Database,
    args: argparse.Namespace,
    texts: list[str],
    shape: Shape,
    big: tuple[Collection, np.ndarray, tuple[np.ndarray, np.ndarray, list[str]]],
) -> dict[str, Any]:
    """A small collection sharing the (big) per-dimension index: the filtered search.

    With two collections in the table, the big one is also measured again on a new connection,
    where the search statement starts unprepared: the case in which PostgreSQL may settle on a
    generic plan (one that does not know which collection is searched).
    """
    m = args.small_collection
    name = f"{args.collection}-small"
    rng = np.random.default_rng(args.seed + 7)
    vectors = make_vectors(rng, m, shape)
    queries = make_queries(rng, vectors, args.warmup + args.queries, shape)
    recall_queries = make_queries(rng, vectors, args.recall_queries, shape)
    async with db.connection() as conn:
        await conn.execute("DELETE FROM collections WHERE name = %s", (name,))
    chunk_ids = await bulk_load(db, name, vectors, texts, max(1, args.documents // 10))
    async with db.connection() as conn:
        await conn.execute("ANALYZE chunks")
    collection = await KnowledgeStore(db).ensure_collection(
        name, EMBEDDER, DIM, tenant=DEFAULT_TENANT
    )
    truth = exact_top_k(vectors, recall_queries, 10)
    out: dict[str, Any] = {"chunks": m, "by_ef_search": {}}
    fresh = Database(db.url, max_size=1)
    await fresh.open(migrate=False)
    try:
        ef = args.ef_search[0]
        print(f"  big collection again, new connection, ef_search={ef}", file=sys.stderr)
        out["big_new_connection"] = {ef: await measure(fresh, *big, ef, args.warmup)}
    finally:
        await fresh.close()
    for ef in args.ef_search:
        print(f"  small collection of {m}, ef_search={ef}: load {load_now()}", file=sys.stderr)
        out["by_ef_search"][ef] = await measure(
            db, collection, queries, (recall_queries, truth, chunk_ids), ef, args.warmup
        )
    async with db.connection() as conn:
        await conn.execute("DELETE FROM collections WHERE name = %s", (name,))
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    squad = load_squad(args.squad)
    texts = [paragraph.text for paragraph in squad.paragraphs]
    # Real questions for the lexical half, in a fixed shuffled order (the file is by article).
    args.questions = [question.question for question in squad.questions]
    random.Random(args.seed).shuffle(args.questions)
    results: dict[str, Any] = {"machine": machine_info(), "retrieval": args.retrieval, "sizes": []}
    async with bench_database(args) as db:
        results["postgres"] = await server_settings(db, PG_SETTINGS)
        for n in args.sizes:
            print(f"size {n}: generating and loading", file=sys.stderr)
            size = await run_size(db, args, n, texts)
            ef, first = next(iter(size["by_ef_search"].items()))
            print(f"plan at {n} chunks, ef_search={ef}:\n{first['plan']}\n", file=sys.stderr)
            if "hybrid_plan" in first:
                print(f"hybrid plan:\n{first['hybrid_plan']}\n", file=sys.stderr)
            results["sizes"].append(size)
    results["load_at_end"] = load_now()
    return results


def report(results: dict[str, Any]) -> str:
    rows = []
    for size in results["sizes"]:
        label = str(size["chunks"])
        rows += table_rows(label, size["by_ef_search"], size["index_build_s"], size["index_mb"])
        small = size.get("small_collection")
        if small:
            label = f"{size['chunks']} (+{small['chunks']} other, new connection)"
            rows += table_rows(label, small["big_new_connection"], None, None)
            label = f"{small['chunks']} (beside {size['chunks']})"
            rows += table_rows(label, small["by_ef_search"], None, None)
    table = format_table(
        [
            "collection chunks",
            "ef_search",
            "queries",
            "mean ms",
            "p50 ms",
            "p99 ms",
            "max ms",
            "recall@10",
            "index build s",
            "index MiB",
            "plan (EXPLAIN)",
            "generic/custom plans",
            "load (1/5/15 min)",
            "retrieval",
        ],
        rows,
    )
    data = "; ".join(
        f"{s['chunks']}: load {s['load_s']:.1f}s, random-pair cos"
        f" {s['data']['random_pair_cos_mean']:.2f}, query->top1 cos"
        f" {s['data']['query_top1_cos_mean']:.2f}, ->top10 cos"
        f" {s['data']['query_top10_cos_mean']:.2f}, 90% variance in"
        f" {s['data']['dims_for_90pct_variance']:.0f} dims"
        for s in results["sizes"]
    )
    machine = machine_line(results["machine"], at_end=results["load_at_end"])
    return f"{table}\n\ndata: {data}\npostgres: {results['postgres']}\n{machine}"


def table_rows(
    label: str, by_ef: dict[int, dict[str, Any]], build_s: float | None, size_mb: float | None
) -> list[list[Any]]:
    return [
        [
            label,
            ef,
            int(t["n"]),
            t["mean_ms"],
            t["p50_ms"],
            t["p99_ms"],
            t["max_ms"],
            m["recall@10"],
            "" if build_s is None else build_s,
            "" if size_mb is None else size_mb,
            m.get("plan_kind", "HNSW index" if m["plan_uses_index"] else "seq scan"),
            f"{m.get('generic_plans', '?')}/{m.get('custom_plans', '?')}",
            m["load"],
            mode,
        ]
        for ef, m in by_ef.items()
        for mode, t in m["modes"].items()
    ]


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def mode_list(text: str) -> list[str]:
    modes = [part.strip() for part in text.split(",") if part.strip()]
    if not modes or set(modes) - {"vector", "hybrid"}:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of vector, hybrid")
    return modes


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=1000, help="timed queries per size")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument(
        "--ef-search",
        type=int_list,
        default=[100],
        help="comma list; 100 is what the Retriever uses",
    )
    parser.add_argument(
        "--cluster-size", type=int, default=Shape.cluster_size, help="chunks per topic"
    )
    parser.add_argument("--documents", type=int, default=50, help="documents the chunks belong to")
    parser.add_argument(
        "--small-collection",
        type=int,
        default=0,
        metavar="M",
        help="also search a collection of M chunks sharing the index",
    )
    parser.add_argument(
        "--retrieval",
        type=mode_list,
        default=["vector"],
        help="comma list of vector, hybrid (vector + full text, SQuAD questions as the query"
        " text); with both, each query is timed in both modes, alternately",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --data-dir: search the collection an earlier run of the same size and seed"
        " loaded, instead of loading it again",
    )
    parser.add_argument("--collection", default="bench-latency")
    parser.add_argument("--seed", type=int, default=0)
    add_squad_arg(parser)  # the chunks' texts
    return run_kb_benchmark(parser, run, report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
