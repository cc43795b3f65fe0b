"""Retrieval: embed the question with the collection's model, then search the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragserve.errors import InvalidInput
from ragserve.kb.embeddings import Embedder
from ragserve.kb.store import KnowledgeStore
from ragserve.kb.types import RetrievedChunk
from ragserve.names import check_collection_name


class Retriever:
    def __init__(self, store: KnowledgeStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    async def retrieve(
        self,
        query: str,
        *,
        collection: str = "default",
        top_k: int = 4,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[RetrievedChunk]:
        check_collection_name(collection)
        target = await self.store.require_collection(collection)
        if target.embedder != self.embedder.name:
            raise InvalidInput(
                f"collection {collection!r} was embedded with {target.embedder};"
                f" this process embeds with {self.embedder.name}"
            )
        vector = await self.embedder.embed_query(query)
        return await self.store.search(
            target, vector, top_k=top_k, document_scope=document_scope, filters=filters
        )
