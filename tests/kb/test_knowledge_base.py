"""Ingest, replace, delete, filter and retrieve, against a real PostgreSQL and real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragserve.errors import InvalidInput, NotFound
from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.store import KnowledgeStore
from ragserve.rag.retrieval import Retriever


def text(source: str, body: str, **metadata: object) -> IngestItem:
    return IngestItem(source=source, text=body, metadata=dict(metadata))


async def test_identical_content_is_unchanged_and_not_reembedded(
    ingestor: Ingestor, kb: KnowledgeStore
) -> None:
    first = await ingestor.ingest("c1", [text("a.txt", "Alpha is the first letter.")])
    assert first[0].status == "ingested" and first[0].chunks == 1
    generation = (await kb.require_collection("c1", tenant="default")).generation
    again = await ingestor.ingest("c1", [text("a.txt", "Alpha is the first letter.")])
    assert again[0].status == "unchanged"
    assert again[0].document_id == first[0].document_id
    assert (
        await kb.require_collection("c1", tenant="default")
    ).generation == generation  # nothing written


async def test_changed_content_replaces_old_chunks_under_same_id(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    first = await ingestor.ingest("c2", [text("p.md", "The office opens at 8am.")])
    second = await ingestor.ingest("c2", [text("p.md", "The office opens at 10am now.")])
    assert second[0].status == "ingested"
    assert second[0].document_id == first[0].document_id
    docs = await kb.list_documents("c2", tenant="default")
    assert len(docs) == 1 and docs[0]["chunks"] == 1
    retriever = Retriever(kb, embedder)
    hits = await retriever.retrieve("When does the office open?", collection="c2", top_k=10)
    assert [h.text for h in hits] == ["The office opens at 10am now."]


async def test_delete_document_removes_its_chunks(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    results = await ingestor.ingest(
        "c3", [text("keep.txt", "Cats sleep a lot."), text("drop.txt", "Dogs bark loudly.")]
    )
    await kb.delete_document("c3", results[1].document_id or "", tenant="default")
    hits = await Retriever(kb, embedder).retrieve("dogs", collection="c3", top_k=10)
    assert {h.source for h in hits} == {"keep.txt"}
    with pytest.raises(NotFound):
        await kb.delete_document("c3", results[1].document_id or "", tenant="default")
    with pytest.raises(NotFound):
        await kb.delete_document("c3", "not-a-uuid", tenant="default")


async def test_bad_file_fails_alone_and_batch_goes_on(ingestor: Ingestor, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.pdf"
    corrupt.write_bytes(b"%PDF-1.7\n this is not really a pdf")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    good = tmp_path / "good.txt"
    good.write_text("Lumen Robotics was founded in 2011.", encoding="utf-8")
    missing = tmp_path / "missing.docx"
    items = [IngestItem(source=str(p), path=p) for p in (corrupt, empty, good, missing)]
    results = {Path(r.source).name: r for r in await ingestor.ingest("c4", items)}
    assert results["good.txt"].status == "ingested"
    for name in ("broken.pdf", "empty.txt", "missing.docx"):
        assert results[name].status == "failed", name
        assert results[name].error
    assert "pdf" in (results["broken.pdf"].error or "").lower()


async def test_scope_and_metadata_filters(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    results = await ingestor.ingest(
        "c5",
        [
            text("hr/leave.md", "Employees get 23 days of annual leave.", team="hr", year=2026),
            text("hr/old.md", "Employees got 20 days of annual leave.", team="hr", year=2020),
            text("it/laptops.md", "Laptops are replaced every 3 years.", team="it", year=2026),
        ],
    )
    retriever = Retriever(kb, embedder)
    ask = "How many days of leave?"
    hits = await retriever.retrieve(ask, collection="c5", top_k=10, filters={"team": "hr"})
    assert {h.source for h in hits} == {"hr/leave.md", "hr/old.md"}
    hits = await retriever.retrieve(
        ask, collection="c5", top_k=10, filters={"team": "hr", "year": 2026}
    )
    assert [h.source for h in hits] == ["hr/leave.md"]
    by_source = await retriever.retrieve(
        ask, collection="c5", top_k=10, document_scope=["it/laptops.md"]
    )
    assert [h.source for h in by_source] == ["it/laptops.md"]
    by_id = await retriever.retrieve(
        ask, collection="c5", top_k=10, document_scope=[results[1].document_id or ""]
    )
    assert [h.source for h in by_id] == ["hr/old.md"]
    assert all(-1.0 <= h.score <= 1.0 for h in hits)


async def test_unknown_collection_and_bad_names(
    kb: KnowledgeStore, embedder: LocalEmbedder, ingestor: Ingestor
) -> None:
    with pytest.raises(NotFound):
        await Retriever(kb, embedder).retrieve("anything", collection="nope")
    with pytest.raises(InvalidInput):
        await ingestor.ingest("bad name!", [text("a", "b")])
