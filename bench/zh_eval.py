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

Besides the set's own 40 off-topic questions, the 64 of ``bench/data/offtopic_zh_handbook.jsonl``
(near-misses written for the handbook) are asked too; "not found" is reported for both sets
together and each apart (``off-topic, old`` / ``new``).

Each question is answered three ways from the same retrieved chunks: as the service does
(``extractive:v4``: the collection's vocabulary, with misspellings counted as the words they
misspell, and the embedding model's check of the candidate sentences, ``grounding.py``), by the
v3 rule (vocabulary without misspellings, no model check), and from the passages alone ("no
vocab": the v2 rule). ``--retrieval`` takes one mode or both (``vector,hybrid``); figures are
also given for the even and odd halves of the questions (the thresholds were chosen on the even
half). The model check's cost is reported as ms per answer (wall time, on this machine's load).

``--english`` runs the same on English instead: the SQuAD sample (tests/data/squad, its
paragraphs as documents) with its 575 questions, and the 25 questions of
``bench/data/offtopic.jsonl`` ("old") and the 167 of ``bench/data/offtopic_en.jsonl`` ("new")
as the off-topic ones.

    python bench/zh_eval.py [--retrieval vector,hybrid] [--english] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_SQUAD,
    add_database_args,
    bench_database,
    load_now,
    load_squad,
    local_embedder,
    machine_info,
    read_jsonl,
    write_json,
)
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import warm_up
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.store import KnowledgeStore
from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers.extractive import ExtractiveAnswerer
from ragserve.rag.answerers.grounding import SentenceGrounding
from ragserve.rag.answerers.vocabulary import CollectionVocabulary
from ragserve.rag.prompts import NOT_FOUND_EN, NOT_FOUND_ZH
from ragserve.rag.retrieval import Retriever
from ragserve.settings import Settings

HERE = Path(__file__).resolve().parent
SET_DIR = HERE / "data" / "zh_handbook"
SAMPLES = HERE.parent / "src" / "ragserve" / "samples"
COLLECTION = "zh-handbook"


def _flat(text: str) -> str:
    return "".join(text.split()).lower()


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


def english_set() -> tuple[list[IngestItem], list[dict[str, Any]]]:
    """The SQuAD sample's paragraphs and questions, and the off-topic questions."""
    squad = load_squad(DEFAULT_SQUAD)
    items = [IngestItem(source=p.id, text=p.text) for p in squad.paragraphs]
    questions = [
        {"id": q.id, "question": q.question, "answers": list(q.answers), "source": q.doc_id}
        for q in squad.questions
    ]
    questions += off_topic("offtopic.jsonl", "old") + off_topic("offtopic_en.jsonl", "new")
    return items, questions


def off_topic(name: str, label: str) -> list[dict[str, Any]]:
    """The questions of an off-topic file of bench/data, marked with ``label``."""
    return [
        {"id": q["id"], "question": q["question"], "answers": [], "source": None, "set": label}
        for q in read_jsonl(HERE / "data" / name)
    ]


def handbook_set(with_samples: bool) -> tuple[list[IngestItem], list[dict[str, Any]]]:
    """The handbook's documents and questions, and the handbook near-misses."""
    questions = read_questions(SET_DIR / "questions.jsonl")
    for q in questions:
        q.setdefault("set", "old")
    return _items(with_samples), questions + off_topic("offtopic_zh_handbook.jsonl", "new")


Row = tuple[dict[str, Any], list[RetrievedChunk], str]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    items, questions = english_set() if args.english else handbook_set(args.with_samples)
    collection = "squad" if args.english else COLLECTION
    settings = Settings()
    results: dict[str, Any] = {}
    grounding_ms: list[float] = []
    async with bench_database(args) as db:
        embedder = local_embedder(settings)
        await warm_up(embedder)
        store = KnowledgeStore(db)
        vocabulary = CollectionVocabulary(store)
        v3_vocabulary = CollectionVocabulary(store, typos=False)
        grounding = SentenceGrounding.for_embedder(embedder)
        answerer = ExtractiveAnswerer(grounding=grounding)
        ingestor = Ingestor(store, embedder, Chunker(settings.chunk_size, settings.chunk_overlap))
        ingested = await ingestor.ingest(collection, items)
        failed = [r for r in ingested if r.status == "failed"]
        if failed:
            raise SystemExit(f"ingest failed: {failed}")
        try:
            for mode in args.retrieval:
                retriever = Retriever(store, embedder, mode=mode)
                rows: list[Row] = []
                v3: list[Row] = []
                blind: list[Row] = []
                for q in questions:
                    text = q["question"]
                    hits = await retriever.retrieve(text, collection=collection, top_k=5)
                    four = hits[:4]
                    unknown = await vocabulary.unknown_share(text, four)
                    scored = answerer.candidates(text, four)
                    similarity = None
                    if grounding is not None and scored:
                        started = time.perf_counter()
                        texts = [s.sentence.text for s in scored[: grounding.sentences]]
                        similarity = await grounding.similarity(text, texts)
                        grounding_ms.append(1000 * (time.perf_counter() - started))
                    rows.append((q, hits, answerer.compose(text, scored, unknown, similarity)))
                    v3_unknown = await v3_vocabulary.unknown_share(text, four)
                    v3.append((q, hits, answerer.compose(text, scored, v3_unknown)))
                    blind.append((q, hits, answerer.compose(text, scored)))
                results[mode] = summarise(rows, args.show_misses)
                results[f"{mode}, v3 rule"] = summarise(v3, 0)
                results[f"{mode}, no vocab"] = summarise(blind, 0)
                for label, answered in ((mode, rows), (f"{mode}, v3 rule", v3)):
                    for half in (0, 1):
                        results[f"{label}, {'even' if half == 0 else 'odd'}"] = summarise(
                            answered[half::2], 0
                        )
        finally:
            await embedder.aclose()
    return {
        "runs": results,
        "machine": machine_info(),
        "load_at_end": load_now(),
        "chunks ingested": sum(r.chunks for r in ingested),  # 0: unchanged, kept from a run
        "answerer": answerer.name,
        "grounding": None if grounding is None else embedder.name,
        "grounding ms per answer": sum(grounding_ms) / max(1, len(grounding_ms)),
        "set": "squad sample + offtopic.jsonl" if args.english else "zh_handbook",
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
        "not_found_off_topic": _not_found(off_topic),
        "off-topic, old": _not_found([row for row in off_topic if row[0].get("set") == "old"]),
        "off-topic, new": _not_found([row for row in off_topic if row[0].get("set") == "new"]),
        "pdf_hits_with_page": sum(h.location.page is not None for h in pdf) / max(1, len(pdf)),
        "other_hits_with_section": sum(bool(h.location.section) for h in structured)
        / max(1, len(structured)),
    }


def _not_found(rows: Sequence[Row]) -> float:
    return sum(answer in NOT_FOUND for _, _, answer in rows) / max(1, len(rows))


def report(results: dict[str, Any]) -> str:
    keys = [
        "answerable",
        "off_topic",
        "recall@1",
        "recall@5",
        "gold_contained",
        "not_found_when_answerable",
        "not_found_off_topic",
        "off-topic, old",
        "off-topic, new",
        "pdf_hits_with_page",
        "other_hits_with_section",
    ]
    runs = results["runs"]
    lines = [f"{'run':24} " + " ".join(f"{k[:14]:>14}" for k in keys)]
    for label, r in runs.items():
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append(f"{label:24} " + " ".join(f"{c:>14}" for c in cells))
    m = results["machine"]
    lines.append(
        f"set {results['set']}, {results['chunks ingested']} chunks ingested,"
        f" answerer {results['answerer']} (model check: {results['grounding']},"
        f" {results['grounding ms per answer']:.0f} ms per answer),"
        f" with samples {results['with_samples']}; load at start {m['loadavg']},"
        f" at end {results['load_at_end']}; {m['date']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_database_args(parser)
    parser.add_argument("--show-misses", type=int, default=0)
    parser.add_argument(
        "--with-samples", action="store_true", help="also ingest src/ragserve/samples"
    )
    parser.add_argument("--retrieval", default="hybrid", help="vector, hybrid or both (comma)")
    parser.add_argument(
        "--english", action="store_true", help="the SQuAD sample and offtopic.jsonl instead"
    )
    args = parser.parse_args(argv)
    args.retrieval = [m for m in args.retrieval.split(",") if m]
    if set(args.retrieval) - {"vector", "hybrid"}:
        parser.error("--retrieval takes vector, hybrid or both")
    results = asyncio.run(run(args))
    print(report(results))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
