"""Answerers turn a question and its retrieved chunks into a streamed, cited answer.

``RAGSERVE_LLM_BASE_URL`` set: :class:`OpenAIChatAnswerer` against that endpoint; unset: the
offline :class:`ExtractiveAnswerer`. :func:`answerer_from_settings` makes that choice.
"""

from __future__ import annotations

import httpx

from ragserve.rag.answerers.base import Answerer
from ragserve.rag.answerers.extractive import ExtractiveAnswerer
from ragserve.rag.answerers.openai import OpenAIChatAnswerer
from ragserve.settings import Settings

__all__ = ["Answerer", "ExtractiveAnswerer", "OpenAIChatAnswerer", "answerer_from_settings"]


def answerer_from_settings(
    settings: Settings, http_client: httpx.AsyncClient | None = None
) -> Answerer:
    """The configured answerer; the caller owns it and must ``await answerer.aclose()``."""
    if settings.llm_base_url:
        return OpenAIChatAnswerer.from_settings(settings, http_client=http_client)
    return ExtractiveAnswerer()
