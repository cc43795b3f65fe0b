"""Answerers turn a question and its retrieved chunks into a streamed, cited answer.

``RAGSERVE_LLM_BASE_URL`` set: :class:`OpenAIChatAnswerer` against that endpoint; unset: the
offline :class:`ExtractiveAnswerer`. :func:`answerer_from_settings` makes that choice.
"""

from __future__ import annotations

import aiohttp

from ragserve.kb.embeddings import Embedder
from ragserve.kb.store import KnowledgeStore
from ragserve.rag.answerers.base import Answerer
from ragserve.rag.answerers.extractive import ExtractiveAnswerer
from ragserve.rag.answerers.grounding import SentenceGrounding
from ragserve.rag.answerers.openai import OpenAIChatAnswerer
from ragserve.rag.answerers.vocabulary import CollectionVocabulary
from ragserve.settings import Settings

__all__ = ["Answerer", "ExtractiveAnswerer", "OpenAIChatAnswerer", "answerer_from_settings"]


def answerer_from_settings(
    settings: Settings,
    http_client: aiohttp.ClientSession | None = None,
    store: KnowledgeStore | None = None,
    embedder: Embedder | None = None,
) -> Answerer:
    """The configured answerer; the caller owns it and must ``await answerer.aclose()``.

    ``store`` lets the offline answerer read the collection's vocabulary, and ``embedder`` (the
    one the collections are searched with) lets it check its sentences with that model when the
    model has a calibration: both make a better "not in the documents". The LLM answerer uses
    neither."""
    if settings.llm_base_url:
        return OpenAIChatAnswerer.from_settings(settings, http_client=http_client)
    vocabulary = CollectionVocabulary(store) if store is not None else None
    return ExtractiveAnswerer(
        unknown_share=vocabulary.unknown_share if vocabulary else None,
        grounding=SentenceGrounding.for_embedder(embedder) if embedder is not None else None,
    )
