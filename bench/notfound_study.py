"""The features behind the offline answerer's "not in the documents" (docs/LOCATIONS.md,
"extractive:v4"), one row per question, and the rules measured on them.

``features`` asks every question of the Chinese handbook set (or, with ``--english``, of the
SQuAD sample) and of its off-topic sets (the old ones and ``bench/data/offtopic_*.jsonl``) with
hybrid retrieval, and writes per question: the unknown share without and with misspellings,
the retrieved chunks' cosines, the e5 cosine of the question with its 5 best candidate
sentences, their lexical coverage, and the v2 rule's answer. ``report`` reads such a file and
prints, on all questions and on the even / odd halves (thresholds were chosen on the even
half): gold-contained, "not found" off-topic (all, old set, new set) and "not found" when
answerable for the v2, v3 and v3+misspellings rules and the shipped v4 model check; then the
distribution of each candidate feature for answerable and off-topic questions.

    python bench/notfound_study.py features --data-dir DIR --out zh.json
    python bench/notfound_study.py features --english --data-dir DIR --out en.json
    python bench/notfound_study.py report zh.json en.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import zh_eval
from _common import add_database_args, bench_database, local_embedder
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import warm_up
from ragserve.kb.ingest import Ingestor
from ragserve.kb.store import KnowledgeStore
from ragserve.rag.answerers.extractive import ExtractiveAnswerer, score_sentences
from ragserve.rag.answerers.grounding import calibration_for
from ragserve.rag.answerers.vocabulary import CollectionVocabulary
from ragserve.rag.prompts import NOT_FOUND_EN, NOT_FOUND_ZH, is_chinese
from ragserve.rag.retrieval import Retriever
from ragserve.settings import Settings

Row = dict[str, Any]


def question_set(english: bool) -> tuple[str, list[Any], list[Row]]:
    """Collection name, documents and questions (answerable, and off-topic marked "old" or
    "new"), as ``bench/zh_eval.py`` asks them."""
    if english:
        items, questions = zh_eval.english_set()
        return "squad", items, questions
    items, questions = zh_eval.handbook_set(with_samples=False)
    return zh_eval.COLLECTION, items, questions


async def features(args: argparse.Namespace) -> None:
    collection, items, questions = question_set(args.english)
    settings = Settings()
    answerer = ExtractiveAnswerer()
    rows: list[Row] = []
    async with bench_database(args) as db:
        embedder = local_embedder(settings)
        await warm_up(embedder)
        store = KnowledgeStore(db)
        v3 = CollectionVocabulary(store, typos=False)
        with_typos = CollectionVocabulary(store, typos=True)
        chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
        await Ingestor(store, embedder, chunker).ingest(collection, items)
        retriever = Retriever(store, embedder, mode="hybrid")
        for i, q in enumerate(questions):
            hits = await retriever.retrieve(q["question"], collection=collection, top_k=10)
            first4 = hits[:4]
            query = np.asarray(await embedder.embed_query(q["question"]))
            scored = score_sentences(q["question"], first4, answerer.weights)[:5]
            texts = [s.sentence.text for s in scored]
            vectors = await embedder.embed_documents(texts) if texts else []
            rows.append(
                {
                    **q,
                    "i": i,
                    "u3": await v3.unknown_share(q["question"], first4),
                    "ut": await with_typos.unknown_share(q["question"], first4),
                    "chunk_cos": [h.score for h in hits],
                    "sent_cos": [float(np.dot(query, np.asarray(v))) for v in vectors],
                    "sent_cov": [s.coverage for s in scored],
                    "v2_answer": answerer.answer(q["question"], first4),
                }
            )
        await embedder.aclose()
    Path(args.out).write_text(json.dumps({"embedder": embedder.name, "rows": rows}))
    print(f"wrote {len(rows)} rows to {args.out}")


def flat(text: str) -> str:
    return "".join(text.split()).lower()


def rates(rows: list[Row], rule: Callable[[Row], bool], half: int | None) -> list[float]:
    """gold-contained, off-topic "not found" (all, old, new), "not found" when answerable."""
    chosen = [r for r in rows if half is None or r["i"] % 2 == half]

    def not_found(r: Row) -> bool:
        return r["v2_answer"] in (NOT_FOUND_EN, NOT_FOUND_ZH) or rule(r)

    def share(group: list[Row], test: Callable[[Row], bool]) -> float:
        return sum(map(test, group)) / max(1, len(group))

    answerable = [r for r in chosen if r["answers"]]
    gold = share(
        answerable,
        lambda r: not not_found(r) and any(flat(a) in flat(r["v2_answer"]) for a in r["answers"]),
    )
    off = [r for r in chosen if not r["answers"]]
    return [
        gold,
        share(off, not_found),
        share([r for r in off if r["set"] == "old"], not_found),
        share([r for r in off if r["set"] == "new"], not_found),
        share(answerable, not_found),
    ]


def shipped_rules(embedder: str) -> dict[str, Callable[[Row], bool]]:
    """The rules compared, v4 with the calibration of the file's embedder (if any)."""
    calibration = calibration_for(embedder)
    min_coverage = ExtractiveAnswerer().weights.min_coverage

    def v4(r: Row) -> bool:
        if (r["ut"] or 0) > 0.6:
            return True
        if calibration is None:
            return False
        quotable = zip(r["sent_cos"], r["sent_cov"], strict=True)
        best = max((c for c, v in quotable if v > min_coverage), default=0.0)
        chinese = is_chinese(r["question"])
        return best < (calibration.min_similarity_zh if chinese else calibration.min_similarity_en)

    return {
        "v2": lambda r: False,
        "v3": lambda r: (r["u3"] or 0) > 0.6,
        "v3 + misspellings": lambda r: (r["ut"] or 0) > 0.6,
        "v4 (+ model check)": v4,
    }


FEATURES: dict[str, Callable[[Row], float]] = {
    "first chunk's cosine": lambda r: float(r["chunk_cos"][0]),
    "best of 5 sentences' cosine": lambda r: max(r["sent_cos"], default=0.0),
    "first sentence's cosine": lambda r: float((r["sent_cos"] or [0.0])[0]),
}


def report(paths: list[Path]) -> None:
    for path in paths:
        data = json.loads(path.read_text())
        rows: list[Row] = data["rows"]
        print(f"\n{path} ({len(rows)} questions, {data['embedder']})")
        print("| rule | half | gold-contained | off-topic nf | old | new | nf when answerable |")
        print("|---|---|---|---|---|---|---|")
        for name, rule in shipped_rules(data["embedder"]).items():
            for half, label in ((None, "all"), (0, "even"), (1, "odd")):
                cells = " | ".join(f"{x:.3f}" for x in rates(rows, rule, half))
                print(f"| {name} | {label} | {cells} |")
        print("\n| feature | answerable p5 / p50 | off-topic p50 / p90 |")
        print("|---|---|---|")
        for name, value in FEATURES.items():
            a = [value(r) for r in rows if r["answers"]]
            o = [value(r) for r in rows if not r["answers"]]
            print(
                f"| {name} | {np.percentile(a, 5):.3f} / {np.percentile(a, 50):.3f} |"
                f" {np.percentile(o, 50):.3f} / {np.percentile(o, 90):.3f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    feats = commands.add_parser("features", help="one row of features per question")
    add_database_args(feats)
    feats.add_argument("--english", action="store_true", help="the SQuAD sample, not zh")
    feats.add_argument("--out", type=Path, required=True)
    rep = commands.add_parser("report", help="the rules and features of feature files")
    rep.add_argument("paths", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "features":
        asyncio.run(features(args))
    else:
        report(args.paths)


if __name__ == "__main__":
    sys.exit(main())
