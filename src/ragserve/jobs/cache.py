"""Keys of the answer cache: the same question, asked the same way, of the same data."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

from ragserve.jobs.models import AnswerRequest
from ragserve.names import DEFAULT_TENANT

_SPACES = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s?!.。？！]+$")


def normalise_question(query: str) -> str:
    """Case, width, spacing and trailing punctuation do not change what is asked."""
    text = unicodedata.normalize("NFKC", query).casefold()
    text = _SPACES.sub(" ", text).strip()
    return _TRAILING.sub("", text)


def stable_hash(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def answer_cache_key(request: AnswerRequest, answerer: str, embedder: str, *, tenant: str) -> str:
    """The key of an answer in the cache, and of its computation in flight (coalescing): it
    names the tenant, so neither is ever shared between tenants. The tenant ``default`` is
    left out, so its keys are those of releases before tenants (a rolling upgrade keeps
    sharing their cache and computations)."""
    owner = {} if tenant == DEFAULT_TENANT else {"tenant": tenant}
    return stable_hash(
        {
            **owner,
            "q": normalise_question(request.query),
            "collection": request.collection,
            "scope": sorted(set(request.document_scope)) if request.document_scope else None,
            "filters": request.filters or None,
            "top_k": request.top_k,
            "answerer": answerer,
            "embedder": embedder,
        }
    )
