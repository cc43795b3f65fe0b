-- Hybrid retrieval: a full-text index beside the vectors (docs/RETRIEVAL.md).
-- ``tsv`` is to_tsvector('simple', text) after Chinese word segmentation, which happens in Python
-- (ragserve.kb.lexical), so it is written by the store at insert, not generated here. Rows of
-- older versions have NULL and are filled at start-up, in batches (KnowledgeStore.backfill_lexical);
-- until then only the vector half of a hybrid search sees them. Expand-only: nothing is dropped.
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tsv tsvector;
CREATE INDEX IF NOT EXISTS chunks_tsv_idx ON chunks USING gin (tsv);
-- The start-up backfill looks for the rows still to fill; this keeps that cheap once done.
CREATE INDEX IF NOT EXISTS chunks_tsv_missing_idx ON chunks (id) WHERE tsv IS NULL;
