"""The ingest pipeline: files or texts in, chunks with embeddings in the store out.

Each document goes load -> chunk -> hash -> (unchanged? stop) -> embed -> replace. A document
that fails is reported with its reason and the batch goes on. Three documents are in flight at
once, each in another stage, so the embedder (the bottleneck) never waits for the others: the
next file is parsed in a thread while the current one is embedded, and the previous one is
written to the database meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragserve.errors import DocumentError, InvalidInput, RagserveError
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import Embedder
from ragserve.kb.loaders import DocumentLimits, load_document
from ragserve.kb.loaders.limits import check_chars
from ragserve.kb.loaders.markdown import MARKDOWN_EXTENSIONS, markdown_items
from ragserve.kb.loaders.structure import build_blocks
from ragserve.kb.store import Collection, KnowledgeStore
from ragserve.kb.types import LOCATION_KEY, Chunk, LoadedDocument
from ragserve.names import DEFAULT_TENANT, check_collection_name
from ragserve.text import estimate_tokens

log = logging.getLogger(__name__)

Status = Literal["ingested", "unchanged", "failed"]

LAYOUT_VERSION = 2
"""Part of the content hash: bump when what chunks are cut from (or carry) changes, so that
documents ingested before are re-chunked when sent again. 2: chunks carry their location."""


@dataclass(frozen=True)
class IngestItem:
    """One document to ingest: raw file bytes (``data``) or already-extracted ``text``."""

    source: str
    data: bytes | None = None
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # read lazily, in the loading thread


@dataclass(frozen=True)
class DocumentResult:
    source: str
    document_id: str | None
    status: Status
    chunks: int
    error: str | None = None
    embedding_tokens: int = 0
    """Tokens embedded (estimated, ``ragserve.text.estimate_tokens``): counted in the tenant's
    usage, not part of the job's result."""

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        del result["embedding_tokens"]
        return result


ProgressCallback = Callable[[DocumentResult], Awaitable[None] | None]


def _load(item: IngestItem, limits: DocumentLimits) -> LoadedDocument:
    if item.path is not None:
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            raise DocumentError(f"cannot read file: {exc.strerror or exc}") from exc
        return load_document(data, item.source, item.metadata, limits)
    if item.data is not None:
        return load_document(item.data, item.source, item.metadata, limits)
    text = (item.text or "").strip()
    if not text:
        raise DocumentError("empty document: no text")
    check_chars(text, limits)
    # Text sent as Markdown gets its heading paths, as an uploaded .md file would.
    markdown = Path(item.source).suffix.lower() in MARKDOWN_EXTENSIONS
    blocks = build_blocks(markdown_items(text), keep_indent=True) if markdown else ()
    return LoadedDocument(
        source=item.source, text=text, metadata=dict(item.metadata), blocks=blocks
    )


async def _read(loading: Awaitable[LoadedDocument]) -> LoadedDocument:
    """Await a load; a loader bug must still fail only its own document."""
    try:
        return await loading
    except RagserveError:
        raise
    except Exception as exc:
        raise DocumentError(f"could not read the document: {exc}") from exc


class Ingestor:
    """Runs the pipeline for one batch at a time; built once per process and shared."""

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder,
        chunker: Chunker,
        limits: DocumentLimits | None = None,
    ) -> None:
        self.limits = limits or DocumentLimits()
        self.store = store
        self.embedder = embedder
        self.chunker = chunker

    def content_hash(self, doc: LoadedDocument) -> str:
        """What decides ``unchanged``: the text, the metadata and how they would be embedded."""
        key = json.dumps(
            {
                "text": doc.text,
                "metadata": doc.metadata,
                "chunker": [self.chunker.chunk_size, self.chunker.chunk_overlap],
                "layout": LAYOUT_VERSION,
                "embedder": self.embedder.name,
            },
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    async def ingest(
        self,
        collection: str,
        items: Sequence[IngestItem],
        on_document: ProgressCallback | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> list[DocumentResult]:
        """Ingest ``items`` into ``tenant``'s ``collection`` (created if need be)."""
        check_collection_name(collection)
        if not items:
            raise InvalidInput("no documents to ingest")
        target = await self._collection(collection, tenant)
        results: list[DocumentResult] = []

        async def report(result: DocumentResult) -> None:
            results.append(result)
            if on_document is not None:
                maybe = on_document(result)
                if maybe is not None:
                    await maybe

        # Parse one document ahead, so CPU-bound loading overlaps embedding.
        pending = asyncio.ensure_future(asyncio.to_thread(_load, items[0], self.limits))
        # The previous document's write, overlapping this one's embedding. Results are still
        # reported in order: a write is awaited before the next document's result.
        writing: _Write | None = None
        try:
            for index, item in enumerate(items):
                loading = pending
                if index + 1 < len(items):
                    pending = asyncio.ensure_future(
                        asyncio.to_thread(_load, items[index + 1], self.limits)
                    )
                step = await self._embed_one(target, item, loading, writing)
                if writing is not None:
                    await report(await writing.task)
                    writing = None
                if isinstance(step, DocumentResult):
                    await report(step)
                else:
                    task = asyncio.ensure_future(self._write_one(target, item, step))
                    writing = _Write(step.doc.source, task)
            if writing is not None:
                await report(await writing.task)
                writing = None
        except Exception:
            if writing is not None:  # an outage: keep the previous document, finish its write
                await asyncio.wait([writing.task])
            raise
        finally:
            pending.cancel()
            if writing is not None:
                writing.task.cancel()
        return results

    async def _collection(self, name: str, tenant: str) -> Collection:
        dim = self.embedder.dim
        if dim is None:
            dim = len(await self.embedder.embed_query("dimension probe"))
        return await self.store.ensure_collection(name, self.embedder.name, dim, tenant=tenant)

    async def _embed_one(
        self,
        collection: Collection,
        item: IngestItem,
        loading: Awaitable[LoadedDocument],
        writing: _Write | None,
    ) -> DocumentResult | _Embedded:
        """Load, chunk and embed one document: its result if it ends here, else what to write."""
        try:
            doc = await _read(loading)
            digest = self.content_hash(doc)
            if writing is not None and writing.source == doc.source:
                await asyncio.shield(writing.task)  # the same source twice: compare with it
            existing = await self.store.find_document(collection.key, doc.source)
            if existing is not None and existing.content_hash == digest:
                return DocumentResult(doc.source, existing.id, "unchanged", 0)
            chunks = self.chunker.split_document(doc)
            if not chunks:
                raise DocumentError("empty document: no text after chunking")
            vectors = await self.embedder.embed_documents([c.embedding_text() for c in chunks])
        except RagserveError as exc:
            return _failed(item, exc)
        return _Embedded(doc, digest, chunks, vectors)

    async def _write_one(
        self, collection: Collection, item: IngestItem, embedded: _Embedded
    ) -> DocumentResult:
        doc, chunks = embedded.doc, embedded.chunks
        try:
            document_id = await self.store.replace_document(
                collection,
                doc.source,
                embedded.digest,
                doc.metadata,
                [chunk.text for chunk in chunks],
                embedded.vectors,
                chunk_metadata=[_chunk_metadata(chunk) for chunk in chunks],
            )
        except RagserveError as exc:
            return _failed(item, exc)
        tokens = sum(estimate_tokens(chunk.embedding_text()) for chunk in chunks)
        return DocumentResult(doc.source, document_id, "ingested", len(chunks), None, tokens)


@dataclass(frozen=True)
class _Embedded:
    """A document ready to be written: its chunks and their vectors."""

    doc: LoadedDocument
    digest: str
    chunks: list[Chunk]
    vectors: list[list[float]]


@dataclass(frozen=True)
class _Write:
    """A document's write in progress, and its source (a later copy must wait for it)."""

    source: str
    task: asyncio.Future[DocumentResult]


def _failed(item: IngestItem, exc: RagserveError) -> DocumentResult:
    """The result of a document that failed for a reason of its own; outages are raised."""
    if exc.retryable:
        raise exc  # the database or the embeddings endpoint is down: retry the whole batch
    log.warning(
        "document failed",
        extra={"event": "ingest.failed", "source": item.source, "error": str(exc)},
    )
    return DocumentResult(item.source, None, "failed", 0, str(exc))


def _chunk_metadata(chunk: Chunk) -> dict[str, Any]:
    """What a chunk stores beside its document's metadata: its location, when known."""
    if chunk.location.is_empty():
        return {}
    return {LOCATION_KEY: chunk.location.as_dict()}
