"""The Chinese evaluation set in bench/data/zh_handbook is well formed and read with locations."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ragserve.kb.chunking import Chunker
from ragserve.kb.loaders import load_path

SET_DIR = Path(__file__).resolve().parents[2] / "bench" / "data" / "zh_handbook"


def flat(text: str) -> str:
    return "".join(text.split())


def test_every_gold_answer_is_in_a_chunk_of_its_document() -> None:
    questions = [
        json.loads(line) for line in (SET_DIR / "questions.jsonl").read_text("utf-8").splitlines()
    ]
    kinds = Counter(q["kind"] for q in questions)
    assert kinds["fact"] + kinds["table"] >= 200 and kinds["off_topic"] >= 30
    assert len({q["id"] for q in questions}) == len(questions)
    chunker = Chunker()
    chunks = {
        path.name: chunker.split_document(load_path(path))
        for path in SET_DIR.iterdir()
        if path.stem.endswith("_zh")
    }
    assert {Path(name).suffix for name in chunks} == {".md", ".pdf", ".docx", ".html"}
    for q in questions:
        if q["kind"] == "off_topic":
            assert q["answers"] == [] and q["source"] is None
            continue
        texts = [flat(c.text) for c in chunks[q["source"]]]
        assert any(flat(a) in t for a in q["answers"] for t in texts), q
    for name, located in chunks.items():
        if name.endswith(".pdf"):
            assert all(c.location.page for c in located), name
        else:
            assert all(c.location.section for c in located), name
