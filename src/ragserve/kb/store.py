"""All SQL of the knowledge base: collections, documents, chunks, vector and hybrid search."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from psycopg.types.json import Jsonb

from ragserve.db.pool import HNSW_EF_SEARCH, Connection, Database
from ragserve.errors import InvalidInput, NotFound
from ragserve.kb.lexical import (
    SEGMENTATION,
    TS_CONFIG,
    Segmentation,
    WordFrequencies,
    lexical_text,
)
from ragserve.kb.types import RetrievedChunk
from ragserve.names import DEFAULT_TENANT, check_collection_name, is_uuid
from ragserve.text import CJK_IDEOGRAPHS

_CHINESE = re.compile(f"[{CJK_IDEOGRAPHS}]")

_INDEX_LOCK_KEY = 0x7261_6769  # serialises CREATE INDEX for a new dimension

log = logging.getLogger(__name__)

RetrievalMode = Literal["vector", "hybrid"]

Fusion = Literal["rrf", "convex"]

FUSION: Fusion = "convex"
"""How the two rankings become one (measured, docs/RETRIEVAL.md): ``rrf`` (reciprocal rank
fusion: sum of 1 / (RRF_K + rank)) or ``convex`` (VECTOR_WEIGHT x the cosine, scaled to 0..1
over the candidates, + the rest x the lexical score over the best lexical score)."""

RRF_K = 60
VECTOR_WEIGHT = 0.5

FUSION_DEPTH = 40
"""Candidates each half of a hybrid search contributes to the fusion (at least top_k)."""

LEXICAL_DF_CAP = 1000
"""A query word found in more chunks of the collection than this (``collection_words``) carries
no weight, and its postings are never read: it is as good as a stop word, in any language.
Rarer words weigh by BM25's IDF."""

LEXICAL_POSTINGS_BUDGET = 1000
"""Postings one search reads at most: the question's words are read rarest first while their
chunk counts add up to no more than this (the rarest one always). The words left out are the
commonest of the question, which weigh least; the budget bounds the rows the lexical half reads
and sums (index-only, from ``chunk_lexemes``) in large collections."""

BACKFILL_BATCH = 500


def collection_key(tenant: str, name: str) -> str:
    """The stored name of ``tenant``'s collection ``name`` (``collections.name``, and the
    ``collection`` of its documents and chunks): the name itself for the tenant ``default``
    (so rows written before tenants existed are its own), else ``tenant/name`` ('/' is in
    neither name, so two tenants' collections never share a key)."""
    return name if tenant == DEFAULT_TENANT else f"{tenant}/{name}"


def collection_key_sql(tenant: str, name: str) -> str:
    """:func:`collection_key` as an SQL expression of ``tenant`` and ``name`` (columns)."""
    return f"CASE WHEN {tenant} = '{DEFAULT_TENANT}' THEN {name} ELSE {tenant} || '/' || {name} END"


def _shown_name(key: str) -> str:
    return key.rpartition("/")[2]


@dataclass(frozen=True)
class Collection:
    name: str
    embedder: str
    embedding_dim: int
    generation: int
    tenant: str = DEFAULT_TENANT

    @property
    def key(self) -> str:
        """The stored name (see :func:`collection_key`)."""
        return collection_key(self.tenant, self.name)


@dataclass(frozen=True)
class StoredDocument:
    id: str
    source: str
    content_hash: str


class KnowledgeStore:
    """Reads and writes the knowledge base tables. Holds no state but the database and the
    collections it has read (``searchable_collection``)."""

    def __init__(
        self,
        db: Database,
        *,
        segmentation: Segmentation = SEGMENTATION,
        fusion: Fusion = FUSION,
        vector_weight: float = VECTOR_WEIGHT,
        postings_budget: int | None = None,
    ) -> None:
        self.db = db
        self.segmentation = segmentation
        self.fusion: Fusion = fusion
        self.vector_weight = vector_weight
        self._read: dict[str, Collection] = {}
        """Collections read by this process, by stored name: what searching needs of them."""
        self.postings_budget = postings_budget
        """None: ``LEXICAL_POSTINGS_BUDGET`` (read at search time)."""

    def lexical_text(self, text: str) -> str:
        return lexical_text(text, self.segmentation)

    def lexical_texts(self, texts: Sequence[str]) -> list[str]:
        return [lexical_text(text, self.segmentation) for text in texts]

    # -- collections -------------------------------------------------------------------

    async def get_collection(self, name: str, *, tenant: str) -> Collection | None:
        """``tenant``'s collection ``name``, if it exists."""
        async with self.db.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT embedder, embedding_dim, generation, tenant"
                    " FROM collections WHERE name = %s",
                    (collection_key(tenant, name),),
                )
            ).fetchone()
        if row is None:
            return None
        found = Collection(name=name, **row)
        self._read[found.key] = found
        return found

    async def require_collection(self, name: str, *, tenant: str) -> Collection:
        found = await self.get_collection(name, tenant=tenant)
        if found is None:
            raise NotFound(f"collection {name!r} does not exist")
        return found

    async def searchable_collection(self, name: str, *, tenant: str) -> Collection:
        """``tenant``'s collection ``name`` for a search, read from the database only if this
        process has not read it before.

        What a search needs of a collection (its stored name, embedder and dimension) never
        changes once it exists: ``ensure_collection`` never changes a row, and collections
        are not deleted. Its ``generation`` does change, so the one returned here may be
        old: whatever depends on it (the answer cache) uses ``require_collection``.
        """
        known = self._read.get(collection_key(tenant, name))
        return known if known is not None else await self.require_collection(name, tenant=tenant)

    async def ensure_collection(
        self, name: str, embedder: str, dim: int, *, tenant: str
    ) -> Collection:
        """Create ``tenant``'s collection for this embedder, or check that it was made with it."""
        check_collection_name(name)
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO collections (name, tenant, embedder, embedding_dim)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (collection_key(tenant, name), tenant, embedder, dim),
            )
            await self._ensure_vector_index(conn, dim)
        found = await self.require_collection(name, tenant=tenant)
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

    async def list_collections(self, *, tenant: str | None) -> list[dict[str, Any]]:
        """``tenant``'s collections (every tenant's when None), by tenant and name."""
        async with self.db.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT c.name, c.tenant, c.embedder, c.embedding_dim, c.generation,"
                    " c.created_at, c.updated_at, count(d.id)::int AS documents,"
                    " coalesce(sum(d.chunk_count), 0)::int AS chunks"
                    " FROM collections c LEFT JOIN documents d ON d.collection = c.name"
                    " WHERE %(tenant)s::text IS NULL OR c.tenant = %(tenant)s"
                    " GROUP BY c.name ORDER BY c.tenant, c.name",
                    {"tenant": tenant},
                )
            ).fetchall()
        return [{**row, "name": _shown_name(row["name"])} for row in rows]

    # -- documents ---------------------------------------------------------------------

    async def find_document(self, collection: str, source: str) -> StoredDocument | None:
        """The document of ``source`` in the collection of stored name ``collection``
        (``Collection.key``)."""
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
        # Chinese segmentation is CPU work (about a millisecond per chunk): off the event loop.
        lexical = await asyncio.to_thread(self.lexical_texts, texts)
        async with self.db.transaction() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO documents (collection, source, content_hash, metadata,"
                    " chunk_count) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (collection, source) DO UPDATE SET"
                    " content_hash = excluded.content_hash, metadata = excluded.metadata,"
                    " chunk_count = excluded.chunk_count, updated_at = now()"
                    " RETURNING id",
                    (collection.key, source, content_hash, Jsonb(metadata), len(texts)),
                )
            ).fetchone()
            assert row is not None  # INSERT ... RETURNING always returns the row
            document_id = row["id"]
            gone = await _delete_chunks(conn, document_id)
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO chunks (document_id, collection, source, ordinal, text,"
                    " metadata, embedding_dim, embedding, tsv)"
                    f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, to_tsvector('{TS_CONFIG}', %s))",
                    [
                        (
                            document_id,
                            collection.key,
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
                            words,
                        )
                        for ordinal, (text, vector, words) in enumerate(
                            zip(texts, vectors, lexical, strict=True)
                        )
                    ],
                )
            await self._bump_generation(conn, collection.key)
            # After the bump: the collection's row lock orders concurrent writers. The new
            # chunks' postings, and the net change of the word counts.
            added = await add_postings(conn, "c.document_id = %s", (document_id,))
            await add_word_counts(conn, _net(added, gone))
        return str(document_id)

    async def delete_document(self, collection: str, document_id: str, *, tenant: str) -> None:
        missing = NotFound(f"document {document_id!r} not found in {collection!r}")
        if not is_uuid(document_id):
            raise missing
        key = collection_key(tenant, collection)
        async with self.db.transaction() as conn:
            gone = await _delete_chunks(conn, document_id, key)
            cur = await conn.execute(
                "DELETE FROM documents WHERE collection = %s AND id = %s", (key, document_id)
            )
            if cur.rowcount == 0:
                raise missing
            await self._bump_generation(conn, key)
            await add_word_counts(conn, _net({}, gone))

    async def list_documents(self, collection: str, *, tenant: str) -> list[dict[str, Any]]:
        found = await self.require_collection(collection, tenant=tenant)
        async with self.db.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT id::text AS document_id, source, content_hash, metadata,"
                    " chunk_count AS chunks, created_at, updated_at"
                    " FROM documents WHERE collection = %s ORDER BY source",
                    (found.key,),
                )
            ).fetchall()

    @staticmethod
    async def _bump_generation(conn: Connection, key: str) -> None:
        await conn.execute(
            "UPDATE collections SET generation = generation + 1, updated_at = now()"
            " WHERE name = %s",
            (key,),
        )

    # -- lexical index ---------------------------------------------------------------

    async def backfill_lexical(self, *, batch: int = BACKFILL_BATCH) -> int:
        """Fill the lexical index of chunks written before it existed (``tsv``, their postings
        in ``chunk_lexemes``, the word counts); return how many.

        Idempotent and safe to run from several processes at once (each batch locks its rows,
        SKIP LOCKED); run at every start-up, it finds nothing to do once done.
        """
        filled = 0
        while True:
            async with self.db.transaction() as conn:
                rows = await (
                    await conn.execute(
                        "SELECT id, text FROM chunks WHERE tsv IS NULL"
                        " LIMIT %s FOR UPDATE SKIP LOCKED",
                        (batch,),
                    )
                ).fetchall()
                if not rows:
                    return filled
                words = await asyncio.to_thread(self.lexical_texts, [r["text"] for r in rows])
                await conn.execute(
                    f"UPDATE chunks c SET tsv = to_tsvector('{TS_CONFIG}', u.words)"
                    " FROM unnest(%s::uuid[], %s::text[]) AS u(id, words) WHERE c.id = u.id",
                    ([r["id"] for r in rows], words),
                )
                ids = [r["id"] for r in rows]
                await add_word_counts(conn, await add_postings(conn, "c.id = ANY(%s)", (ids,)))
            filled += len(rows)
            log.info("lexical index: filled %d older chunks", filled)

    async def word_frequencies(
        self, chunk_id: str, words: Sequence[str], *, prefixes: Sequence[str] = ()
    ) -> WordFrequencies | None:
        """How many chunks of the collection ``chunk_id`` belongs to hold each of ``words``
        (lexemes as the index has them: lowercase, Chinese segmented), and a lexeme starting
        with each of ``prefixes`` (word beginnings: "announ" meets "announced").

        A word's count is read from ``collection_words``, a prefix's counted in the GIN index;
        each count stops at ``LEXICAL_DF_CAP`` + 1 (rarity is what matters, and a prefix's
        count reads no more postings than that). None when the chunk no longer exists.
        """
        if not is_uuid(chunk_id):
            return None
        params = {"chunk": chunk_id, "words": list(words), "prefixes": list(prefixes)}
        async with self.db.connection() as conn:
            rows = await (
                await conn.execute(
                    _WORD_FREQUENCIES_SQL, params | {"cap": LEXICAL_DF_CAP + 1}, prepare=False
                )
            ).fetchall()
        if not rows:
            return None
        found = [r for r in rows if r["word"] is not None]
        return WordFrequencies(
            chunks=int(rows[0]["n"]),
            words={r["word"]: int(r["df"]) for r in found if not r["prefix"]},
            prefixes={r["word"]: int(r["df"]) for r in found if r["prefix"]},
        )

    # -- search ------------------------------------------------------------------------

    async def _query_words(self, text: str) -> str:
        """The question's text for the lexical half. Only Chinese needs segmenting (jieba's
        first use loads its dictionary, 1-3 s): off the event loop then; other text is used as
        it is, without a hop to a thread (milliseconds on a busy machine, measured)."""
        if _CHINESE.search(text) is None:
            return text
        return await asyncio.to_thread(self.lexical_text, text)

    async def search(
        self,
        collection: Collection,
        query_vector: Sequence[float],
        *,
        top_k: int,
        query_text: str | None = None,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
        ef_search: int | None = None,
    ) -> list[RetrievedChunk]:
        """The ``top_k`` best chunks for a query, best first.

        Without ``query_text``: the chunks nearest to ``query_vector`` by cosine distance. With
        it (hybrid): the vector ranking and a lexical ranking of the same chunks (full-text
        index, words weighted by rarity) fused (``fusion``), in one statement. Either
        way ``score`` is the chunk's cosine similarity to the query; the order is the ranking's.

        ``document_scope`` holds document ids or sources; ``filters`` are equality tests on
        metadata (JSONB containment); both restrict both halves. The vector query uses the HNSW
        index (same expression and predicate as the index) and is re-sorted outside, since
        iterative scans may return rows slightly out of order.
        """
        dim = int(collection.embedding_dim)
        where = ["collection = %(collection)s", f"embedding_dim = {dim}"]
        params: dict[str, Any] = {
            "collection": collection.key,
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
        if query_text is None:
            sql = _vector_sql(dim, " AND ".join(where))
            candidates = top_k
        else:
            candidates = max(FUSION_DEPTH, top_k)
            params |= {
                "candidates": candidates,
                "words": await self._query_words(query_text),
                "df_cap": LEXICAL_DF_CAP,
                "budget": self.postings_budget or LEXICAL_POSTINGS_BUDGET,
                "rrf_k": RRF_K,
                "vector_weight": self.vector_weight,
            }
            sql = _hybrid_sql(
                dim, " AND ".join(where), self.fusion, narrowed=bool(document_scope or filters)
            )
        # Never a prepared statement: a generic plan ignores which collection is searched and
        # can sort a whole large collection instead of using its index (10x slower, measured).
        ef = max(ef_search or HNSW_EF_SEARCH, candidates)  # no fewer candidates than answers
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

    async def words_sharing_a_beginning(
        self, chunk_id: str, words: Sequence[str], *, start: int = 3, spread: int = 2
    ) -> dict[str, dict[str, int]] | None:
        """For each of ``words``: the collection's lexemes that begin with the same ``start``
        characters and differ in length by at most ``spread``, with their chunk counts (read
        from ``collection_words``; at most ``SIMILAR_WORDS_LIMIT`` per word). What a misspelt
        word ("platycenida") is compared with to find the word it means ("platyctenida").
        None when the chunk no longer exists."""
        if not is_uuid(chunk_id):
            return None
        params = {"chunk": chunk_id, "words": list(words), "start": start, "spread": spread}
        async with self.db.connection() as conn:
            rows = await (
                await conn.execute(
                    _SIMILAR_WORDS_SQL, params | {"limit": SIMILAR_WORDS_LIMIT}, prepare=False
                )
            ).fetchall()
        if not rows:
            return None
        found: dict[str, dict[str, int]] = {word: {} for word in words}
        for r in rows:
            if r["lexeme"] is not None:
                found[r["word"]][r["lexeme"]] = int(r["chunks"])
        return found


SIMILAR_WORDS_LIMIT = 200
"""Lexemes read per word by :meth:`KnowledgeStore.words_sharing_a_beginning`."""

# The collection's lexemes that begin like each word: a range scan of collection_words' primary
# key between the beginning ("pla") and the next one ("plb"). The LEFT JOIN keeps a row when
# nothing matches, none at all when the chunk is gone.
_SIMILAR_WORDS_SQL = (
    "WITH target AS (SELECT collection FROM chunks WHERE id = %(chunk)s::uuid)"
    " SELECT q.word, m.lexeme, m.chunks FROM target t"
    " LEFT JOIN unnest(%(words)s::text[]) AS q(word) ON length(q.word) > %(start)s"
    " LEFT JOIN LATERAL (SELECT cw.lexeme, cw.chunks FROM collection_words cw"
    " WHERE cw.collection = t.collection AND cw.lexeme >= left(q.word, %(start)s)"
    " AND cw.lexeme < left(q.word, %(start)s - 1)"
    " || chr(ascii(substr(q.word, %(start)s, 1)) + 1)"
    " AND starts_with(cw.lexeme, left(q.word, %(start)s))"
    " AND abs(length(cw.lexeme) - length(q.word)) <= %(spread)s"
    " ORDER BY cw.lexeme LIMIT %(limit)s) m ON true"
)


# -- word counts and postings (collection_words, chunk_lexemes: migrations 0011, 0012) ------

WordCounts = dict[tuple[str, str], int]
"""A change in chunk counts per (collection, lexeme)."""

_DELETE_CHUNKS = (
    "WITH gone AS (DELETE FROM chunks WHERE document_id = %(document)s"
    " AND (%(collection)s::text IS NULL OR collection = %(collection)s)"
    " RETURNING id, collection, tsv),"
    # Sorted: the primary-key probes below then walk the index in order (half the page reads).
    " words AS MATERIALIZED (SELECT g.collection, w.lexeme, g.id FROM gone g, unnest(g.tsv) AS w"
    " ORDER BY 1, 2, 3),"
    # Data-modifying CTEs run whether or not they are read: the postings go with their chunks.
    " unposted AS (DELETE FROM chunk_lexemes p USING words w WHERE p.collection = w.collection"
    " AND p.lexeme = w.lexeme AND p.chunk_id = w.id)"
    " SELECT collection, lexeme, count(*)::int AS n FROM words GROUP BY collection, lexeme"
)
# The postings of chunks just written (or just given their tsv), from their tsv in SQL; what
# was added, as word counts for collection_words. Sorted: the primary key is filled in order.
_ADD_POSTINGS = (
    "WITH added AS (INSERT INTO chunk_lexemes (collection, lexeme, chunk_id)"
    " SELECT c.collection, w.lexeme, c.id FROM chunks c, unnest(c.tsv) AS w WHERE {where}"
    " ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING RETURNING collection, lexeme)"
    " SELECT collection, lexeme, count(*)::int AS n FROM added GROUP BY collection, lexeme"
)
# Sorted, so that concurrent writers lock the rows they share in the same order.
_ADD_WORD_COUNTS = (
    "INSERT INTO collection_words AS w (collection, lexeme, chunks)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::int[]) ORDER BY 1, 2"
    " ON CONFLICT (collection, lexeme) DO UPDATE SET chunks = w.chunks + excluded.chunks"
)
_DROP_UNUSED_WORDS = (
    "DELETE FROM collection_words w USING unnest(%s::text[], %s::text[]) AS f(collection, lexeme)"
    " WHERE w.collection = f.collection AND w.lexeme = f.lexeme AND w.chunks <= 0"
)


async def _delete_chunks(
    conn: Connection, document_id: Any, collection: str | None = None
) -> WordCounts:
    """Delete a document's chunks; the words they held (what the deleted rows really were,
    even if a concurrent backfill filled them meanwhile)."""
    rows = await (
        await conn.execute(_DELETE_CHUNKS, {"document": document_id, "collection": collection})
    ).fetchall()
    return {(r["collection"], r["lexeme"]): r["n"] for r in rows}


async def add_postings(conn: Connection, where: str, params: Sequence[Any]) -> WordCounts:
    """Write ``chunk_lexemes`` rows for the chunks matching ``where`` (their ``tsv``, already
    set); return the words added, for :func:`add_word_counts`."""
    rows = await (await conn.execute(_ADD_POSTINGS.format(where=where), params)).fetchall()
    return {(r["collection"], r["lexeme"]): r["n"] for r in rows}


def _net(added: WordCounts, removed: WordCounts) -> WordCounts:
    change = dict(added)
    for key, n in removed.items():
        change[key] = change.get(key, 0) - n
    return {key: n for key, n in change.items() if n}


async def add_word_counts(conn: Connection, change: WordCounts) -> None:
    """Apply ``change`` to ``collection_words``; words no chunk holds any more are removed."""
    if not change:
        return
    keys = sorted(change)
    await conn.execute(
        _ADD_WORD_COUNTS,
        ([c for c, _ in keys], [w for _, w in keys], [change[k] for k in keys]),
    )
    fallen = [k for k in keys if change[k] < 0]
    if fallen:
        await conn.execute(_DROP_UNUSED_WORDS, ([c for c, _ in fallen], [w for _, w in fallen]))


# -- search statements -----------------------------------------------------------------


# The collection of a chunk, its size, and each word's chunk count (the LEFT JOIN keeps one row
# with the size when no words are asked; no row at all when the chunk is gone). A whole word's
# count is a primary-key probe of collection_words; a prefix's (chunks holding any word that
# starts with it) is counted in the GIN index, up to the cap.
_WORD_FREQUENCIES_SQL = (
    "WITH target AS (SELECT collection FROM chunks WHERE id = %(chunk)s::uuid),"
    " size AS (SELECT t.collection, greatest(coalesce(sum(d.chunk_count), 0), 1)::int AS n"
    " FROM target t LEFT JOIN documents d ON d.collection = t.collection GROUP BY t.collection),"
    " lookups AS (SELECT w AS word, false AS prefix FROM unnest(%(words)s::text[]) w"
    " UNION SELECT p, true FROM unnest(%(prefixes)s::text[]) p WHERE p <> '')"
    " SELECT s.n, l.word, l.prefix, CASE WHEN l.prefix THEN (SELECT count(*) FROM (SELECT 1"
    " FROM chunks c WHERE c.collection = s.collection"
    " AND c.tsv @@ (quote_literal(l.word) || ':*')::tsquery LIMIT %(cap)s) m)"
    " ELSE least(coalesce((SELECT cw.chunks FROM collection_words cw"
    " WHERE cw.collection = s.collection AND cw.lexeme = l.word), 0), %(cap)s) END AS df"
    " FROM size s LEFT JOIN lookups l ON l.word <> ''"
)


def _vector_sql(dim: int, where: str) -> str:
    return (
        "WITH nearest AS MATERIALIZED ("
        " SELECT id, document_id, source, text, metadata,"
        f" embedding::vector({dim}) <=> %(query)s::vector({dim}) AS distance"
        f" FROM chunks WHERE {where}"
        f" ORDER BY embedding::vector({dim}) <=> %(query)s::vector({dim})"
        " LIMIT %(top_k)s)"
        " SELECT id::text AS chunk_id, document_id::text, source, text, metadata,"
        " 1 - distance AS score FROM nearest ORDER BY distance"
    )


def _hybrid_sql(dim: int, where: str, fusion: Fusion, *, narrowed: bool) -> str:
    """Vector top-N and lexical top-N under the same ``where``, fused, in one statement.

    The lexical half first looks the query's words up in ``collection_words`` (a primary-key
    probe each): a word found in more than ``df_cap`` chunks of the collection is dropped before
    any of its postings is read (too common to tell chunks apart), and so are the commonest of
    the others beyond ``budget`` postings in all. The rest weigh BM25's IDF,
    ln(1 + (N - df + 0.5) / (df + 0.5)), N being the collection's chunk count (from
    ``documents``, a small table), and only their postings are read, each word's one index-only
    range scan of ``chunk_lexemes`` (collection, lexeme, chunk_id): no visit to the wide chunks
    rows. A chunk's lexical score is the sum of the weights of the query words it contains.
    ``narrowed`` (a document scope or metadata filters in ``where``): the scored chunks are
    then checked against ``where`` in ``chunks`` before the best are kept.
    """
    if narrowed:
        best_lexical = (
            f" SELECT m.id, m.score FROM matched m JOIN chunks c ON c.id = m.id WHERE {where}"
            " ORDER BY m.score DESC, m.id LIMIT %(candidates)s"
        )
    else:  # the postings are the collection's: nothing to check
        best_lexical = "SELECT id, score FROM matched ORDER BY score DESC, id LIMIT %(candidates)s"
    halves = (
        "WITH nearest AS MATERIALIZED ("
        f" SELECT id, embedding::vector({dim}) <=> %(query)s::vector({dim}) AS distance"
        f" FROM chunks WHERE {where}"
        f" ORDER BY embedding::vector({dim}) <=> %(query)s::vector({dim})"
        " LIMIT %(candidates)s),"
        " size AS (SELECT greatest(coalesce(sum(chunk_count), 0), 1)::float8 AS n"
        " FROM documents WHERE collection = %(collection)s),"
        # The question's words (tokenised once), with their chunk counts (NULL: no chunk).
        " asked AS MATERIALIZED (SELECT q.lexeme, cw.chunks"
        f" FROM unnest(to_tsvector('{TS_CONFIG}', %(words)s)) q LEFT JOIN collection_words cw"
        " ON cw.collection = %(collection)s AND cw.lexeme = q.lexeme),"
        " counted AS (SELECT lexeme, chunks,"
        " sum(chunks) OVER (ORDER BY chunks, lexeme) AS reading"
        " FROM asked WHERE chunks <= %(df_cap)s),"
        " weights AS MATERIALIZED (SELECT lexeme,"
        " ln(1 + (size.n - chunks + 0.5) / (chunks + 0.5)) AS idf FROM counted, size"
        " WHERE reading = chunks OR reading <= %(budget)s),"
        # LATERAL with LIMIT: a range scan per word, whatever the table's size (a plain join
        # may be planned as one scan of all the collection's postings).
        " postings AS MATERIALIZED (SELECT w.idf, p.id FROM weights w CROSS JOIN LATERAL"
        " (SELECT chunk_id AS id FROM chunk_lexemes WHERE collection = %(collection)s"
        " AND lexeme = w.lexeme LIMIT %(df_cap)s) p),"
        # Chinese words of the question that no chunk of the collection holds (docs/LOCATIONS.md):
        # they count in the question's total weight below, at the highest IDF, so that a chunk
        # matching only the common part of a Chinese question does not get a full share.
        " unknown AS (SELECT count(*) AS words FROM asked"
        f" WHERE chunks IS NULL AND lexeme ~ '[{CJK_IDEOGRAPHS}]'),"
        " matched AS (SELECT id, sum(idf) AS score FROM postings GROUP BY id),"
        " lexical AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank"
        f" FROM ({best_lexical}) b),"
    )
    if fusion == "rrf":
        return halves + (
            " vector AS (SELECT id, row_number() OVER (ORDER BY distance) AS rank FROM nearest),"
            " fused AS (SELECT id, sum(1.0 / (%(rrf_k)s + rank)) AS fused FROM"
            " (SELECT id, rank FROM vector UNION ALL SELECT id, rank FROM lexical) r"
            " GROUP BY id ORDER BY fused DESC, id LIMIT %(top_k)s)"
            " SELECT c.id::text AS chunk_id, c.document_id::text, c.source, c.text, c.metadata,"
            f" 1 - (c.embedding::vector({dim}) <=> %(query)s::vector({dim})) AS score"
            " FROM fused f JOIN chunks c ON c.id = f.id ORDER BY f.fused DESC, f.id"
        )
    # Convex combination of the two scores, each in 0..1: the cosine scaled over the
    # candidates, the lexical score as the share of the question's word weight the chunk
    # holds (so matching only common words counts little, even when nothing better matches).
    # A lexical-only candidate gets its exact cosine, a vector-only one a lexical score of 0.
    return halves + (
        " candidates AS (SELECT id FROM nearest UNION SELECT id FROM lexical),"
        " scored AS (SELECT c.id, c.document_id, c.source, c.text, c.metadata,"
        f" 1 - (c.embedding::vector({dim}) <=> %(query)s::vector({dim})) AS score,"
        " coalesce(l.score, 0) AS lexical FROM candidates k JOIN chunks c ON c.id = k.id"
        " LEFT JOIN lexical l ON l.id = k.id),"
        " fused AS (SELECT *, %(vector_weight)s * coalesce((score - min(score) OVER ())"
        " / nullif(max(score) OVER () - min(score) OVER (), 0), 1)"
        " + (1 - %(vector_weight)s)"
        " * coalesce(lexical / nullif((SELECT coalesce(sum(idf), 0) FROM weights)"
        " + (SELECT words FROM unknown) * (SELECT ln(1 + (n + 0.5) / 0.5) FROM size), 0), 0)"
        " AS fused FROM scored)"
        " SELECT id::text AS chunk_id, document_id::text, source, text, metadata, score"
        " FROM fused ORDER BY fused DESC, id LIMIT %(top_k)s"
    )
