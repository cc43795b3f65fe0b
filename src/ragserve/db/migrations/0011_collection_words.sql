-- Hybrid retrieval: in how many chunks of each collection each word (lexeme of chunks.tsv)
-- occurs, so that a search knows a question word's frequency before it reads the word's postings
-- and skips the common ones (reading the posting list of "the" in a large collection was the
-- costly part of a hybrid search; docs/RETRIEVAL.md). Kept by the store in the transaction that
-- writes, replaces or deletes a document's chunks, and by the lexical backfill. Expand-only.
CREATE TABLE IF NOT EXISTS collection_words (
    collection text NOT NULL REFERENCES collections (name) ON DELETE CASCADE,
    lexeme     text NOT NULL,
    chunks     int  NOT NULL,
    PRIMARY KEY (collection, lexeme)
);

-- Collections written before this migration: counted from the chunks already indexed (rows
-- still without ``tsv`` are counted when the start-up backfill fills them).
INSERT INTO collection_words (collection, lexeme, chunks)
SELECT c.collection, w.lexeme, count(*)
FROM chunks c, unnest(c.tsv) AS w
WHERE c.tsv IS NOT NULL AND EXISTS (SELECT 1 FROM collections k WHERE k.name = c.collection)
GROUP BY c.collection, w.lexeme
ON CONFLICT (collection, lexeme) DO NOTHING;
