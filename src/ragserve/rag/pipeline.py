"""The answer pipeline as a LangChain Runnable that streams events.

Input: ``{"query", "collection", "document_scope", "filters", "top_k"}``, and ``"tenant"`` (the
collection's owner; the worker adds it from the job, default ``default``).
Output stream, in order: one ``{"type": "sources", "sources": [...]}``, any number of
``{"type": "token", "text": str}``, and one ``{"type": "answer", "answer": str, "sources": [...]}``.
A worker drives it with ``astream``; a user can swap in any Runnable with the same contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableGenerator

from ragserve.names import DEFAULT_TENANT
from ragserve.rag.answerers.base import Answerer
from ragserve.rag.retrieval import Retriever

AnswerEvent = dict[str, Any]


def build_answer_pipeline(
    retriever: Retriever, answerer: Answerer
) -> Runnable[dict[str, Any], AnswerEvent]:
    async def run(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[AnswerEvent]:
        async for request in inputs:
            chunks = await retriever.retrieve(
                request["query"],
                tenant=request.get("tenant") or DEFAULT_TENANT,
                collection=request.get("collection") or "default",
                top_k=int(request.get("top_k") or 4),
                document_scope=request.get("document_scope"),
                filters=request.get("filters"),
            )
            sources = [chunk.as_source() for chunk in chunks]
            yield {"type": "sources", "sources": sources}
            pieces: list[str] = []
            async for token in answerer.stream(request["query"], chunks):
                pieces.append(token)
                yield {"type": "token", "text": token}
            yield {"type": "answer", "answer": "".join(pieces), "sources": sources}

    return RunnableGenerator(run, name="ragserve_answer")
