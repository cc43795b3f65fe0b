"""The interface every answerer (LLM provider or offline fallback) implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ragserve.kb.types import RetrievedChunk


@dataclass
class LLMUsage:
    """Tokens one answer cost at the LLM, filled in by the answerer that called it: the
    provider's ``usage`` when it reports one, else an estimate (``ragserve.text``). Left at
    zero by answerers that call no LLM."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reported: bool = False
    """The numbers are the provider's own (not estimated)."""


@runtime_checkable
class Answerer(Protocol):
    """Turns a question and its retrieved chunks into an answer, streamed as text pieces.

    ``name`` is a stable identity of everything that changes the answer (model, endpoint,
    sampling, prompt version). The answer cache keys on it, so two answerers with the same
    name must give the same answer to the same input.
    """

    name: str

    def stream(
        self, question: str, chunks: Sequence[RetrievedChunk], usage: LLMUsage | None = None
    ) -> AsyncIterator[str]:
        """Yield the answer in pieces; their concatenation is the full answer.

        ``usage``, when given, receives the tokens the answer cost once the stream has ended.

        Chunks are numbered from 1 in the given order, and the answer cites them as ``[n]``.
        Failures raise :class:`ragserve.errors.ProviderError` (``TransientProviderError`` when
        another attempt may succeed). Callers that stop early should close the iterator
        (``contextlib.aclosing``) so the underlying connection is released at once.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and other resources; the answerer is unusable afterwards."""
        ...
