"""Hybrid retrieval against a real PostgreSQL and the bundled embedder: identifiers that vector
search misses, Chinese words, filters and scope on both paths, the start-up backfill."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.lexical import bigrams, lexical_text
from ragserve.kb.store import KnowledgeStore, RetrievalMode
from ragserve.rag.retrieval import Retriever
from support.processes import ROOT

IDENTIFIERS = ROOT / "bench" / "data" / "identifiers.jsonl"
MODES: tuple[RetrievalMode, ...] = ("vector", "hybrid")


def item(source: str, text: str, **metadata: str) -> IngestItem:
    return IngestItem(source=source, text=text, metadata=metadata)


def identifier_rows(per_kind: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first ``per_kind`` passages of each kind of the identifier set, and their questions."""
    rows = [json.loads(line) for line in IDENTIFIERS.read_text(encoding="utf-8").splitlines()]
    passages = [
        r for r in rows if r["kind"] == "passage" and int(r["id"].rsplit("-", 1)[1]) < per_kind
    ]
    kept = {p["id"] for p in passages}
    questions = [r for r in rows if r["kind"] == "query" and r["doc_id"] in kept]
    return passages, questions


async def test_identifiers_vector_misses_are_found_by_hybrid(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    # Catalogue entries that differ in little but their code (E-4417 vs E-4471 ...), part,
    # policy and invoice numbers, names; each question names one identifier.
    passages, questions = identifier_rows(12)
    await ingestor.ingest("ids", [IngestItem(source=p["id"], text=p["text"]) for p in passages])
    first: dict[str, float] = {}
    for mode in MODES:
        retriever = Retriever(kb, embedder, mode=mode)
        hits = 0
        for question in questions:
            found = await retriever.retrieve(question["question"], collection="ids", top_k=1)
            hits += found[0].source == question["doc_id"]
        first[mode] = hits / len(questions)
    print(f"identifier recall@1 over {len(questions)} questions: {first}")
    assert first["vector"] <= 0.85  # dense vectors blur codes that differ in a digit
    assert first["hybrid"] >= 0.95  # the code is a rare word: the lexical half finds it


def test_chinese_text_is_cut_into_words_for_the_index() -> None:
    assert lexical_text("Error E-4471 stays as it is.") == "Error E-4471 stays as it is."
    words = lexical_text("员工享受带薪年休假。").split()
    assert "带薪" in words and "年休假" in words and "员工" in words
    assert bigrams("年休假") == ["年休", "休假"] and bigrams("假") == ["假"]


async def test_a_chinese_word_finds_its_chunk(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    docs = {
        "leave.txt": "员工在本公司连续工作满一年后，享受带薪年休假，每年五天。",
        "travel.txt": "出差人员应在返回后十个工作日内提交报销单，并附发票原件。",
        "overtime.txt": "休息日安排工作的，优先安排调休，无法调休的按两倍支付加班费。",
    }
    await ingestor.ingest("zh", [IngestItem(source=s, text=t) for s, t in docs.items()])
    async with kb.db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT source FROM chunks WHERE collection = 'zh' AND tsv @@ %s::tsquery",
                ("报销",),
            )
        ).fetchall()
    assert [r["source"] for r in rows] == ["travel.txt"]  # indexed as a word, not one long run
    hybrid = Retriever(kb, embedder, mode="hybrid")
    found = await hybrid.retrieve("发票", collection="zh", top_k=1)
    assert found[0].source == "travel.txt"


@pytest.mark.parametrize("mode", MODES)
async def test_filters_and_scope_hold_on_both_paths(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder, mode: RetrievalMode
) -> None:
    collection = f"scoped_{mode}"
    results = await ingestor.ingest(
        collection,
        [
            item("hr.md", "Error E-5120 means the badge reader is offline.", team="hr"),
            item("it.md", "Error E-5120 means the VPN token expired.", team="it"),
            item("ops.md", "The loading dock closes at six.", team="ops"),
        ],
    )
    ids = {r.source: r.document_id for r in results}
    retriever = Retriever(kb, embedder, mode=mode)
    query = "What does error E-5120 mean?"
    filtered = await retriever.retrieve(
        query, collection=collection, top_k=5, filters={"team": "ops"}
    )
    assert [c.source for c in filtered] == ["ops.md"]  # the lexical match elsewhere is excluded
    scoped = await retriever.retrieve(
        query, collection=collection, top_k=5, document_scope=[ids["it.md"], "ops.md"]
    )
    assert {c.source for c in scoped} == {"it.md", "ops.md"}
    assert scoped[0].source == "it.md"
    both = await retriever.retrieve(
        query, collection=collection, top_k=5, document_scope=["hr.md"], filters={"team": "it"}
    )
    assert both == []


async def test_backfill_fills_chunks_written_before_the_index(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    await ingestor.ingest(
        "old",
        [item(f"{n}.txt", f"Ticket T-{9000 + n} concerns printer {n}.") for n in range(5)],
    )
    async with kb.db.connection() as conn:
        await conn.execute("UPDATE chunks SET tsv = NULL WHERE collection = 'old'")
    assert await kb.backfill_lexical(batch=2) == 5
    assert await kb.backfill_lexical(batch=2) == 0  # idempotent
    hybrid = Retriever(kb, embedder, mode="hybrid")
    found = await hybrid.retrieve("ticket T-9003", collection="old", top_k=1)
    assert found[0].source == "3.txt"
