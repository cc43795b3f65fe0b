"""Plain data shared by the knowledge base and the layers above it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LoadedDocument:
    """The text a loader extracted from one file, before chunking."""

    source: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievedChunk:
    """One chunk returned by retrieval, with its cosine similarity to the query."""

    chunk_id: str
    document_id: str
    source: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_source(self) -> dict[str, Any]:
        """The shape of one entry of ``result.sources`` in the HTTP API."""
        return {
            "document_id": self.document_id,
            "source": self.source,
            "chunk_id": self.chunk_id,
            "score": self.score,
            "text": self.text,
            "metadata": self.metadata,
        }
