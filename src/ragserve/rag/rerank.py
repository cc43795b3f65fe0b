"""Optional reranking of retrieved chunks by a cross-encoder behind the common ``/rerank`` API.

One request shape serves every common server: ``POST {base_url}/rerank`` with
``{"model", "query", "documents", "texts", "top_n"}`` (Cohere, Jina and vLLM read
``documents``; Hugging Face TEI reads ``texts``; each ignores the other's field). The answer is
recognised by its shape: ``{"results": [{"index", "relevance_score"}]}`` (Cohere, Jina, vLLM)
or ``[{"index", "score"}]`` (TEI). A reranker that fails, is too slow or answers nonsense never
fails the question: the caller keeps the fused order (logged and counted, see ``failures``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from ragserve.errors import ProviderError
from ragserve.kb.types import RetrievedChunk
from ragserve.logs import redact_url
from ragserve.settings import Settings

log = logging.getLogger(__name__)


class RerankError(ProviderError):
    """The rerank endpoint failed or answered in a shape we do not know."""


def parse_scores(payload: Any, count: int) -> list[float]:
    """One score per document (by index) from a Cohere/Jina/vLLM or a TEI answer."""
    if isinstance(payload, dict) and isinstance(payload.get("results"), list):
        items, key = payload["results"], "relevance_score"
    elif isinstance(payload, list):
        items, key = payload, "score"
    else:
        raise RerankError(f"unknown rerank answer: {str(payload)[:200]}")
    scores = [float("-inf")] * count  # documents a top_n answer leaves out go last
    for item in items:
        try:
            index, score = int(item["index"]), float(item[key])
        except (KeyError, TypeError, ValueError) as exc:
            raise RerankError(f"bad rerank result {str(item)[:200]}") from exc
        if not 0 <= index < count:
            raise RerankError(f"rerank result index {index} out of range 0..{count - 1}")
        scores[index] = score
    return scores


class HttpReranker:
    """Client of one ``/rerank`` endpoint; reorders chunks, or keeps their order on failure."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 2.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/rerank"
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=timeout_s, headers=headers)
        self.failures = 0
        """Rerank calls that failed (error, timeout, bad answer) and kept the fused order."""

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        body: dict[str, Any] = {
            "query": query,
            "documents": list(texts),
            "texts": list(texts),
            "top_n": len(texts),
        }
        if self.model:
            body["model"] = self.model
        try:
            response = await self._client.post(self.url, json=body)
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            where = redact_url(self.url)
            raise RerankError(f"rerank request to {where} failed: {exc!r}") from exc
        return parse_scores(payload, len(texts))

    async def rerank(
        self, query: str, chunks: Sequence[RetrievedChunk], top_k: int
    ) -> list[RetrievedChunk]:
        """The ``top_k`` best of ``chunks`` by the reranker, or the first ``top_k`` on failure."""
        if len(chunks) <= 1:
            return list(chunks[:top_k])
        try:
            scores = await self.scores(query, [chunk.text for chunk in chunks])
        except RerankError as exc:
            self.failures += 1
            log.warning("reranking skipped, fused order kept (%d failures): %s", self.failures, exc)
            return list(chunks[:top_k])
        order = sorted(range(len(chunks)), key=lambda i: (-scores[i], i))
        return [chunks[i] for i in order[:top_k]]

    async def aclose(self) -> None:
        await self._client.aclose()


def reranker_from_settings(settings: Settings) -> HttpReranker | None:
    """The configured reranker, or None when ``RAGSERVE_RERANK_BASE_URL`` is unset."""
    if settings.rerank_base_url is None:
        return None
    key = settings.rerank_api_key
    return HttpReranker(
        settings.rerank_base_url,
        model=settings.rerank_model,
        api_key=key.get_secret_value() if key else None,
        timeout_s=settings.rerank_timeout_s,
    )
