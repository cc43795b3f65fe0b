"""The Chinese handbook set end to end: retrieval recall and the offline answerer's answers.

The four documents of ``bench/data/zh_handbook`` (Markdown, PDF, Word, HTML) are ingested
through the real loaders, chunker, local embedder and PostgreSQL (with ``--with-samples``,
also the samples in ``src/ragserve/samples`` as distractors: another company's handbook on the
same topics, which answers some of the questions with its own numbers, so recall and answers
measured with them are lower bounds); each question is then retrieved with
vector search (``top_k`` 5) and answered by the extractive answerer from the first 4 chunks
(the API's default ``top_k``). Measured:

* recall@1/5: a chunk of the question's document that contains a gold answer is at rank 1 /
  among the first 5;
* gold-contained: the answer contains a gold answer (questions with one);
* not-found: the answer is "not in the documents" (off-topic questions; and, as errors,
  answerable ones);
* locations: share of retrieved chunks of PDFs with a page, of the others with a section.

    python bench/zh_eval.py [--json PATH] [--show-misses N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import add_database_args, bench_database, local_embedder, machine_info, write_json
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import warm_up
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.store import KnowledgeStore
from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers.extractive import ExtractiveAnswerer
from ragserve.rag.prompts import NOT_FOUND_EN, NOT_FOUND_ZH
from ragserve.rag.retrieval import Retriever
from ragserve.settings import Settings

HERE = Path(__file__).resolve().parent
SET_DIR = HERE / "data" / "zh_handbook"
SAMPLES = HERE.parent / "src" / "ragserve" / "samples"
COLLECTION = "zh-handbook"


def _flat(text: str) -> str:
    return "".join(text.split())


def holds_answer(chunk: RetrievedChunk, source: str, answers: Sequence[str]) -> bool:
    body = _flat(chunk.text)
    return chunk.source == source and any(_flat(a) in body for a in answers)


# The set's few English questions are told "not found" in English.
NOT_FOUND = (NOT_FOUND_ZH, NOT_FOUND_EN)


def read_questions(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _items(with_samples: bool) -> list[IngestItem]:
    documents = sorted(p for p in SET_DIR.iterdir() if p.stem.endswith("_zh"))
    items = [IngestItem(source=p.name, path=p) for p in documents]
    if with_samples:
        samples = sorted(p for p in SAMPLES.iterdir() if p.suffix != ".json")
        items += [IngestItem(source=f"samples/{p.name}", path=p) for p in samples]
    return items


async def run(args: argparse.Namespace) -> dict[str, Any]:
    questions = read_questions(SET_DIR / "questions.jsonl")
    settings = Settings()
    answerer = ExtractiveAnswerer()
    async with bench_database(args) as db:
        embedder = local_embedder(settings)
        await warm_up(embedder)
        store = KnowledgeStore(db)
        ingestor = Ingestor(store, embedder, Chunker(settings.chunk_size, settings.chunk_overlap))
        ingested = await ingestor.ingest(COLLECTION, _items(args.with_samples))
        failed = [r for r in ingested if r.status == "failed"]
        if failed:
            raise SystemExit(f"ingest failed: {failed}")
        retriever = Retriever(store, embedder)
        rows = []
        try:
            for q in questions:
                hits = await retriever.retrieve(q["question"], collection=COLLECTION, top_k=5)
                rows.append((q, hits, answerer.answer(q["question"], hits[:4])))
        finally:
            await embedder.aclose()
    return summarise(rows, args.show_misses) | {
        "machine": machine_info(),
        "chunks": sum(r.chunks for r in ingested),
        "answerer": answerer.name,
        "with_samples": args.with_samples,
    }


def summarise(
    rows: Sequence[tuple[dict[str, Any], list[RetrievedChunk], str]], show_misses: int
) -> dict[str, Any]:
    answerable = [(q, hits, a) for q, hits, a in rows if q["answers"]]
    off_topic = [(q, hits, a) for q, hits, a in rows if not q["answers"]]
    at1 = at5 = contained = false_not_found = 0
    shown = 0
    for q, hits, answer in answerable:
        ranks = [i for i, h in enumerate(hits) if holds_answer(h, q["source"], q["answers"])]
        at1 += bool(ranks) and ranks[0] == 0
        at5 += bool(ranks)
        hit = any(_flat(a) in _flat(answer) for a in q["answers"])
        contained += hit
        false_not_found += answer in NOT_FOUND
        if not hit and shown < show_misses:
            shown += 1
            print(f"MISS {q['id']} {q['question']} gold={q['answers']}\n     -> {answer!r}")
    pdf = [h for _, hits, _ in rows for h in hits if h.source.endswith(".pdf")]
    structured = [
        h for _, hits, _ in rows for h in hits if h.source.endswith((".md", ".html", ".docx"))
    ]
    n = len(answerable)
    return {
        "questions": len(rows),
        "answerable": n,
        "off_topic": len(off_topic),
        "recall@1": at1 / n,
        "recall@5": at5 / n,
        "gold_contained": contained / n,
        "not_found_when_answerable": false_not_found / n,
        "not_found_off_topic": sum(a in NOT_FOUND for _, _, a in off_topic) / len(off_topic),
        "pdf_hits_with_page": sum(h.location.page is not None for h in pdf) / max(1, len(pdf)),
        "other_hits_with_section": sum(bool(h.location.section) for h in structured)
        / max(1, len(structured)),
    }


def report(results: dict[str, Any]) -> str:
    keys = [
        "questions",
        "answerable",
        "off_topic",
        "chunks",
        "recall@1",
        "recall@5",
        "gold_contained",
        "not_found_when_answerable",
        "not_found_off_topic",
        "pdf_hits_with_page",
        "other_hits_with_section",
        "answerer",
        "with_samples",
    ]
    lines = []
    for key in keys:
        value = results[key]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:28} {shown}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_database_args(parser)
    parser.add_argument("--show-misses", type=int, default=0)
    parser.add_argument(
        "--with-samples", action="store_true", help="also ingest src/ragserve/samples"
    )
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    print(report(results))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
