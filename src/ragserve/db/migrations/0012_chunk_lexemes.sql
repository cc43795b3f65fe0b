-- Hybrid retrieval: each collection's postings (which chunks hold each word, a row per lexeme of
-- chunks.tsv) in a narrow table whose primary key is ordered for the search: one word's postings
-- in one collection are one index-only range scan, with no visit to the wide chunks rows
-- (embedding + text) and no other collection's postings (docs/RETRIEVAL.md). Kept by the store
-- in the transaction that writes, replaces or deletes a document's chunks, and by the lexical
-- backfill. Expand-only: chunks.tsv and its GIN index stay (older releases search with them).
CREATE TABLE IF NOT EXISTS chunk_lexemes (
    collection text NOT NULL,
    lexeme     text NOT NULL,
    chunk_id   uuid NOT NULL,
    PRIMARY KEY (collection, lexeme, chunk_id)
);

-- Collections written before this migration: the postings of the chunks already indexed (rows
-- still without ``tsv`` get theirs when the start-up backfill fills them). Sorted, so the
-- primary key is filled in order.
INSERT INTO chunk_lexemes (collection, lexeme, chunk_id)
SELECT c.collection, w.lexeme, c.id
FROM chunks c, unnest(c.tsv) AS w
WHERE c.tsv IS NOT NULL AND EXISTS (SELECT 1 FROM collections k WHERE k.name = c.collection)
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING;

-- Added after the fill: one check of the whole table instead of one per row. Deleting a
-- collection removes its postings; a deleted chunk's are removed by the store (a cascade from
-- chunks would need a second index, on chunk_id, as large as the primary key).
ALTER TABLE chunk_lexemes ADD CONSTRAINT chunk_lexemes_collection_fkey
    FOREIGN KEY (collection) REFERENCES collections (name) ON DELETE CASCADE;

-- Index-only scans skip the heap only on pages the visibility map marks all-visible, which
-- (auto)vacuum does. Insert-only tables are vacuumed after 20 % new rows by default: at 8 M
-- postings (100k chunks) that is 20k chunks ingested before the new postings stop costing heap
-- fetches. 1 % (and 5 % for replaced/deleted rows) keeps the fetches to recent ingests; such a
-- vacuum only reads the pages changed since the last one.
ALTER TABLE chunk_lexemes SET (
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_scale_factor = 0.05
);
