"""Retrieval: embed the question with the collection's model, search the store (vector or
hybrid), then optionally let a reranker reorder the best candidates (docs/RETRIEVAL.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragserve.errors import InvalidInput
from ragserve.kb.embeddings import Embedder
from ragserve.kb.store import KnowledgeStore, RetrievalMode
from ragserve.kb.types import RetrievedChunk
from ragserve.names import DEFAULT_TENANT, check_collection_name
from ragserve.rag.rerank import HttpReranker


class Retriever:
    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder,
        *,
        mode: RetrievalMode = "hybrid",
        reranker: HttpReranker | None = None,
        rerank_candidates: int = 4,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.mode = mode
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        """The reranker sees this many times ``top_k`` candidates."""

    async def retrieve(
        self,
        query: str,
        *,
        tenant: str = DEFAULT_TENANT,
        collection: str = "default",
        top_k: int = 4,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[RetrievedChunk]:
        check_collection_name(collection)
        # Read once per process (a worker's job has just read it for its cache generation).
        target = await self.store.searchable_collection(collection, tenant=tenant)
        if target.embedder != self.embedder.name:
            raise InvalidInput(
                f"collection {collection!r} was embedded with {target.embedder};"
                f" this process embeds with {self.embedder.name}"
            )
        vector = await self.embedder.embed_query(query)
        wanted = top_k * self.rerank_candidates if self.reranker else top_k
        found = await self.store.search(
            target,
            vector,
            top_k=wanted,
            query_text=query if self.mode == "hybrid" else None,
            document_scope=document_scope,
            filters=filters,
        )
        if self.reranker is None:
            return found
        return await self.reranker.rerank(query, found, top_k)
