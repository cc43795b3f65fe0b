"""The version that runs a job: the package release plus a hash of the pipeline's configuration.

Two workers of the same release but with another model, embedder or chunking give different
answers, so for a canary they are different versions. The hash covers what changes behaviour
and nothing that does not (pool sizes, timeouts, URLs of the API itself).
"""

from __future__ import annotations

import hashlib
import json

from ragserve import __version__
from ragserve.settings import Settings

HASH_CHARS = 8


def pipeline_version(settings: Settings, *, answerer: str, embedder: str) -> str:
    """``<package version>+<hash>``, e.g. ``0.1.0+3f2a9c1d``.

    ``answerer`` and ``embedder`` are the models' own names, which already include their
    model, endpoint, sampling and prompt version.
    """
    behaviour = {
        "answerer": answerer,
        "embedder": embedder,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "max_attempts": settings.max_attempts,
        "job_timeout_s": settings.job_timeout_s,
    }
    blob = json.dumps(behaviour, sort_keys=True, separators=(",", ":")).encode()
    return f"{__version__}+{hashlib.sha256(blob).hexdigest()[:HASH_CHARS]}"
