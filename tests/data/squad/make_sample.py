"""Rebuild this sample from the full SQuAD v1.1 dev set, converted to the two JSONL files below.

    python tests/data/squad/make_sample.py FULL_DIR

``FULL_DIR`` holds ``corpus.jsonl`` (all 2,067 paragraphs) and ``queries.jsonl`` (all 10,570
questions) in the format described in this folder's README. The sample takes
``PARAGRAPHS_PER_ARTICLE`` paragraphs of every article and ``QUESTIONS_PER_PARAGRAPH`` questions
of each, drawn with a fixed seed, so it is the same every time.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

PARAGRAPHS_PER_ARTICLE = 6
QUESTIONS_PER_PARAGRAPH = 2
SEED = 2016
HERE = Path(__file__).resolve().parent


def read(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("full_dir", type=Path)
    args = parser.parse_args()
    rng = random.Random(SEED)
    corpus = read(args.full_dir / "corpus.jsonl")
    queries = read(args.full_dir / "queries.jsonl")
    by_title: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for paragraph in corpus:
        by_title[paragraph["title"]].append(paragraph)
    chosen: list[dict[str, Any]] = []
    for paragraphs in by_title.values():  # file order
        picked = rng.sample(paragraphs, min(PARAGRAPHS_PER_ARTICLE, len(paragraphs)))
        chosen.extend(sorted(picked, key=paragraphs.index))
    by_paragraph: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for query in queries:
        by_paragraph[query["doc_id"]].append(query)
    questions: list[dict[str, Any]] = []
    for paragraph in chosen:
        own = by_paragraph[paragraph["id"]]
        questions.extend(rng.sample(own, min(QUESTIONS_PER_PARAGRAPH, len(own))))
    write(HERE / "corpus.jsonl", chosen)
    write(HERE / "queries.jsonl", questions)
    print(f"{len(chosen)} paragraphs, {len(questions)} questions")


if __name__ == "__main__":
    main()
