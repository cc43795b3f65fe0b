"""The answer pipeline as a LangChain Runnable that streams events.

Input: ``{"query", "collection", "document_scope", "filters", "top_k"}``, and ``"tenant"`` (the
collection's owner; the worker adds it from the job, default ``default``).
Output stream, in order: one ``{"type": "sources", "sources": [...]}``, any number of
``{"type": "token", "text": str}``, and one ``{"type": "answer", "answer": str, "sources": [...],
"usage": {"prompt_tokens", "completion_tokens", "embedding_tokens"}}`` (``usage``: what the
answer cost; a Runnable of a user's own may leave it out).
A worker drives it with ``astream``; a user can swap in any Runnable with the same contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableGenerator

from ragserve.names import DEFAULT_TENANT
from ragserve.rag.answerers.base import Answerer, LLMUsage
from ragserve.rag.retrieval import Retriever
from ragserve.text import estimate_tokens

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
            llm = LLMUsage()
            async for token in answerer.stream(request["query"], chunks, llm):
                pieces.append(token)
                yield {"type": "token", "text": token}
            usage = {
                "prompt_tokens": llm.prompt_tokens,
                "completion_tokens": llm.completion_tokens,
                # The query's embedding (estimated: embedders report no usage per query).
                "embedding_tokens": estimate_tokens(request["query"]),
            }
            yield {"type": "answer", "answer": "".join(pieces), "sources": sources, "usage": usage}

    return RunnableGenerator(run, name="ragserve_answer")
