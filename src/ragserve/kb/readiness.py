"""Readiness of the embedding model, for the API's and the worker's `/readyz`."""

from __future__ import annotations

import asyncio
import logging
import time

from ragserve.kb.embeddings import Embedder, Preloadable

log = logging.getLogger(__name__)


class EmbedderCheck:
    """Is the embedding model there and able to embed? Checked for real, paid for once.

    A model that is not loaded is not ready, and a probe never loads it (that is start-up's
    job, and would take seconds). A loaded model must also embed one short text; that success
    is remembered as long as the model stays loaded, so later probes cost nothing. A failure
    is remembered for ``retry_s``, so frequent probes do not hammer a broken endpoint.
    """

    PROBE_TEXT = "ready?"

    def __init__(self, embedder: Embedder, *, timeout_s: float = 2.0, retry_s: float = 2.0):
        self.embedder = embedder
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._embedded = False
        self._next_try = 0.0
        self._lock = asyncio.Lock()

    async def ready(self) -> bool:
        if isinstance(self.embedder, Preloadable) and not self.embedder.loaded:
            self._embedded = False
            return False
        if self._embedded:
            return True
        async with self._lock:  # one probe at a time; the others wait for its verdict
            if not self._embedded and time.monotonic() >= self._next_try:
                self._embedded = await self._probe()
                if not self._embedded:
                    self._next_try = time.monotonic() + self.retry_s
        return self._embedded

    async def _probe(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                vector = await self.embedder.embed_query(self.PROBE_TEXT)
        except Exception as exc:
            log.warning(
                "embedding model not ready",
                extra={"event": "ready.models", "embedder": self.embedder.name, "error": str(exc)},
            )
            return False
        return len(vector) > 0 and self.embedder.dim in (None, len(vector))
