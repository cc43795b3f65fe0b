"""What makes ingest faster must not change what it stores: documents embedded side by side on
several threads, and a document written while the next one is embedded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.store import KnowledgeStore

SENTENCES = [
    "The office opens at nine.",
    "年假一共有十五天。",
    "Refunds are paid within thirty days.",
    "The Yangtze flows into the East China Sea.",
    "VPN access needs a hardware token.",
    "出差住宿标准按城市分级。",
    "Passwords expire every ninety days.",
]


async def test_document_workers_give_the_same_vectors_in_order() -> None:
    """Two threads, one engine thread each, batches of 2: the same vectors as one thread with
    batches of 8 (the shape before), bit for bit, in the order of the texts (the engine is
    re-entrant, and a text's vector does not depend on its batch)."""
    serial = LocalEmbedder(batch_size=8, document_workers=1)
    parallel = LocalEmbedder(batch_size=2, document_workers=2)
    try:
        one = await serial.embed_documents(SENTENCES)
        two = await parallel.embed_documents(SENTENCES)
    finally:
        await serial.aclose()
        await parallel.aclose()
    assert np.array_equal(np.asarray(one), np.asarray(two))
    assert len({tuple(v) for v in two}) == len(SENTENCES)


async def test_a_question_does_not_queue_behind_document_batches() -> None:
    embedder = LocalEmbedder(batch_size=1, document_workers=1)
    await embedder.load()
    try:
        documents = asyncio.create_task(embedder.embed_documents(SENTENCES * 4))
        await asyncio.sleep(0)  # the first batch is submitted
        vector = await embedder.embed_query("when does the office open?")
        assert not documents.done(), "the question waited for all document batches"
        assert len(await documents) == len(SENTENCES) * 4
    finally:
        await embedder.aclose()
    assert len(vector) == embedder.dim


class SlowWrites:
    """The real store, with each write held 0.3 s and the intervals of writes recorded."""

    def __init__(self, inner: KnowledgeStore) -> None:
        self.inner = inner
        self.writes: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def replace_document(self, *args: Any, **kwargs: Any) -> str:
        start = time.perf_counter()
        await asyncio.sleep(0.3)
        try:
            return await self.inner.replace_document(*args, **kwargs)
        finally:
            self.writes.append((start, time.perf_counter()))


class RecordedEmbedder:
    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.calls: list[tuple[float, float]] = []

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        start = time.perf_counter()
        try:
            return await self.inner.embed_documents(texts)
        finally:
            self.calls.append((start, time.perf_counter()))

    async def embed_query(self, text: str) -> list[float]:
        return await self.inner.embed_query(text)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_document_is_written_while_the_next_is_embedded(
    kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    store = SlowWrites(kb)
    recorded = RecordedEmbedder(embedder)
    ingestor = Ingestor(store, recorded, Chunker(800, 100))  # type: ignore[arg-type]
    items = [IngestItem(source=f"d{i}.txt", text=text) for i, text in enumerate(SENTENCES[:3])]
    reported: list[str] = []
    results = await ingestor.ingest("overlap", items, lambda r: reported.append(r.source))
    assert [r.source for r in results] == reported == ["d0.txt", "d1.txt", "d2.txt"]
    assert [r.status for r in results] == ["ingested"] * 3
    # document 1 was embedded during the write of document 0, and 2 during that of 1
    for (w_start, w_end), (e_start, _) in zip(store.writes, recorded.calls[1:], strict=False):
        assert w_start <= e_start <= w_end
    docs = await kb.list_documents("overlap", tenant="default")
    assert sorted(d["source"] for d in docs) == ["d0.txt", "d1.txt", "d2.txt"]


async def test_the_same_source_twice_in_one_batch_ends_with_the_last_copy(
    ingestor: Ingestor, kb: KnowledgeStore
) -> None:
    """The second copy is compared with the first one's write, not with what was there before."""
    old = IngestItem(source="p.txt", text="The office opens at 8am.")
    new = IngestItem(source="p.txt", text="The office opens at 10am now.")
    await ingestor.ingest("dup", [old])
    results = await ingestor.ingest("dup", [new, old])
    assert [r.status for r in results] == ["ingested", "ingested"]
    docs = await kb.list_documents("dup", tenant="default")
    assert len(docs) == 1 and docs[0]["chunks"] == 1
    again = await ingestor.ingest("dup", [old])
    assert again[0].status == "unchanged"  # what is stored is the last copy
