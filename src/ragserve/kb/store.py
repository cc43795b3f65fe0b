"""All SQL of the knowledge base: collections, documents, chunks and vector search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from ragserve.db.pool import HNSW_EF_SEARCH, Connection, Database
from ragserve.errors import InvalidInput, NotFound
from ragserve.kb.types import RetrievedChunk
from ragserve.names import check_collection_name, is_uuid

_INDEX_LOCK_KEY = 0x7261_6769  # serialises CREATE INDEX for a new dimension


@dataclass(frozen=True)
class Collection:
    name: str
    embedder: str
    embedding_dim: int
    generation: int


@dataclass(frozen=True)
class StoredDocument:
    id: str
    source: str
    content_hash: str


class KnowledgeStore:
    """Reads and writes the knowledge base tables. Holds no state but the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- collections -------------------------------------------------------------------

    async def get_collection(self, name: str) -> Collection | None:
        async with self.db.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT name, embedder, embedding_dim, generation"
                    " FROM collections WHERE name = %s",
                    (name,),
                )
            ).fetchone()
        return Collection(**row) if row else None

    async def require_collection(self, name: str) -> Collection:
        found = await self.get_collection(name)
        if found is None:
            raise NotFound(f"collection {name!r} does not exist")
        return found

    async def ensure_collection(self, name: str, embedder: str, dim: int) -> Collection:
        """Create the collection for this embedder, or check that it was made with it."""
        check_collection_name(name)
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO collections (name, embedder, embedding_dim) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (name, embedder, dim),
            )
            await self._ensure_vector_index(conn, dim)
        found = await self.require_collection(name)
        if found.embedder != embedder:
            raise InvalidInput(
                f"collection {name!r} was embedded with {found.embedder}, not {embedder}:"
                " use another collection or the same embeddings setting"
            )
        return found

    async def _ensure_vector_index(self, conn: Connection, dim: int) -> None:
        # One partial HNSW index per dimension, since the column's dimension is not fixed.
        index = f"chunks_embedding_{int(dim)}_hnsw"
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INDEX_LOCK_KEY,))
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {index} ON chunks USING hnsw"
                f" ((embedding::vector({int(dim)})) vector_cosine_ops)"
                f" WHERE embedding_dim = {int(dim)}"
            )

    async def list_collections(self) -> list[dict[str, Any]]:
        async with self.db.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT c.name, c.embedder, c.embedding_dim, c.generation, c.created_at,"
                    " c.updated_at, count(d.id)::int AS documents,"
                    " coalesce(sum(d.chunk_count), 0)::int AS chunks"
                    " FROM collections c LEFT JOIN documents d ON d.collection = c.name"
                    " GROUP BY c.name ORDER BY c.name"
                )
            ).fetchall()
        return rows

    # -- documents ---------------------------------------------------------------------

    async def find_document(self, collection: str, source: str) -> StoredDocument | None:
        async with self.db.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT id::text, source, content_hash FROM documents"
                    " WHERE collection = %s AND source = %s",
                    (collection, source),
                )
            ).fetchone()
        return StoredDocument(**row) if row else None

    async def replace_document(
        self,
        collection: Collection,
        source: str,
        content_hash: str,
        metadata: dict[str, Any],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        chunk_metadata: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        """Write a document and its chunks, replacing any older version, in one transaction.

        Each chunk stores the document's ``metadata`` plus its own ``chunk_metadata`` entry
        (its location, under a reserved key).

        The document keeps its id across versions; readers see either the old chunks or the
        new ones, never a mix.
        """
        dim = collection.embedding_dim
        async with self.db.transaction() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO documents (collection, source, content_hash, metadata,"
                    " chunk_count) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (collection, source) DO UPDATE SET"
                    " content_hash = excluded.content_hash, metadata = excluded.metadata,"
                    " chunk_count = excluded.chunk_count, updated_at = now()"
                    " RETURNING id",
                    (collection.name, source, content_hash, Jsonb(metadata), len(texts)),
                )
            ).fetchone()
            assert row is not None  # INSERT ... RETURNING always returns the row
            document_id = row["id"]
            await conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO chunks (document_id, collection, source, ordinal, text,"
                    " metadata, embedding_dim, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            document_id,
                            collection.name,
                            source,
                            ordinal,
                            text,
                            Jsonb(
                                {**metadata, **chunk_metadata[ordinal]}
                                if chunk_metadata
                                else metadata
                            ),
                            dim,
                            np.asarray(vector, dtype=np.float32),
                        )
                        for ordinal, (text, vector) in enumerate(zip(texts, vectors, strict=True))
                    ],
                )
            await self._bump_generation(conn, collection.name)
        return str(document_id)

    async def delete_document(self, collection: str, document_id: str) -> None:
        if not is_uuid(document_id):
            raise NotFound(f"document {document_id!r} not found in {collection!r}")
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "DELETE FROM documents WHERE collection = %s AND id = %s",
                (collection, document_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"document {document_id!r} not found in {collection!r}")
            await self._bump_generation(conn, collection)

    async def list_documents(self, collection: str) -> list[dict[str, Any]]:
        await self.require_collection(collection)
        async with self.db.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT id::text AS document_id, source, content_hash, metadata,"
                    " chunk_count AS chunks, created_at, updated_at"
                    " FROM documents WHERE collection = %s ORDER BY source",
                    (collection,),
                )
            ).fetchall()

    @staticmethod
    async def _bump_generation(conn: Connection, collection: str) -> None:
        await conn.execute(
            "UPDATE collections SET generation = generation + 1, updated_at = now()"
            " WHERE name = %s",
            (collection,),
        )

    # -- search ------------------------------------------------------------------------

    async def search(
        self,
        collection: Collection,
        query_vector: Sequence[float],
        *,
        top_k: int,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
        ef_search: int | None = None,
    ) -> list[RetrievedChunk]:
        """The ``top_k`` chunks nearest to ``query_vector`` by cosine distance.

        ``document_scope`` holds document ids or sources; ``filters`` are equality tests on
        metadata (JSONB containment). The inner query uses the HNSW index (same expression and
        predicate as the index); the outer one re-sorts, since iterative scans may return rows
        slightly out of order.
        """
        dim = int(collection.embedding_dim)
        where = ["collection = %(collection)s", f"embedding_dim = {dim}"]
        params: dict[str, Any] = {
            "collection": collection.name,
            "query": np.asarray(query_vector, dtype=np.float32),
            "top_k": top_k,
        }
        if document_scope:
            ids = [s for s in document_scope if is_uuid(s)]
            where.append("(document_id = ANY(%(ids)s::uuid[]) OR source = ANY(%(sources)s))")
            params["ids"] = ids
            params["sources"] = list(document_scope)
        if filters:
            where.append("metadata @> %(filters)s")
            params["filters"] = Jsonb(filters)
        sql = (
            "WITH nearest AS MATERIALIZED ("
            " SELECT id, document_id, source, text, metadata,"
            f" embedding::vector({dim}) <=> %(query)s::vector({dim}) AS distance"
            f" FROM chunks WHERE {' AND '.join(where)}"
            f" ORDER BY embedding::vector({dim}) <=> %(query)s::vector({dim})"
            " LIMIT %(top_k)s)"
            " SELECT id::text AS chunk_id, document_id::text, source, text, metadata,"
            " 1 - distance AS score FROM nearest ORDER BY distance"
        )
        # Never a prepared statement: a generic plan ignores which collection is searched and
        # can sort a whole large collection instead of using its index (10x slower, measured).
        ef = max(ef_search or HNSW_EF_SEARCH, top_k)  # no fewer candidates than answers
        if ef == HNSW_EF_SEARCH:  # the connection's setting: no transaction needed
            async with self.db.connection() as conn:
                rows = await (await conn.execute(sql, params, prepare=False)).fetchall()
        else:
            async with self.db.transaction() as conn:
                await conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
                rows = await (await conn.execute(sql, params, prepare=False)).fetchall()
        return [
            RetrievedChunk(
                chunk_id=r["chunk_id"],
                document_id=r["document_id"],
                source=r["source"],
                text=r["text"],
                score=float(r["score"]),
                metadata=r["metadata"],
            )
            for r in rows
        ]
