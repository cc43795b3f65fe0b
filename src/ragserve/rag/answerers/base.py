"""The interface every answerer (LLM provider or offline fallback) implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from ragserve.kb.types import RetrievedChunk


@runtime_checkable
class Answerer(Protocol):
    """Turns a question and its retrieved chunks into an answer, streamed as text pieces.

    ``name`` is a stable identity of everything that changes the answer (model, endpoint,
    sampling, prompt version). The answer cache keys on it, so two answerers with the same
    name must give the same answer to the same input.
    """

    name: str

    def stream(self, question: str, chunks: Sequence[RetrievedChunk]) -> AsyncIterator[str]:
        """Yield the answer in pieces; their concatenation is the full answer.

        Chunks are numbered from 1 in the given order, and the answer cites them as ``[n]``.
        Failures raise :class:`ragserve.errors.ProviderError` (``TransientProviderError`` when
        another attempt may succeed). Callers that stop early should close the iterator
        (``contextlib.aclosing``) so the underlying connection is released at once.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and other resources; the answerer is unusable afterwards."""
        ...
