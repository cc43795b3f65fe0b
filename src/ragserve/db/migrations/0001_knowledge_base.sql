-- Knowledge base: collections, documents and their chunks with embeddings.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE collections (
    name          text PRIMARY KEY,
    -- The embedder that wrote this collection's vectors; queries must use the same one.
    embedder      text NOT NULL,
    embedding_dim int  NOT NULL,
    -- Bumped by every ingest or delete that changes the collection: cached answers
    -- remember the generation they were computed at.
    generation    bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    collection   text NOT NULL REFERENCES collections (name) ON DELETE CASCADE,
    source       text NOT NULL,
    content_hash text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    chunk_count  int NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection, source)
);

-- Chunks carry a copy of their document's collection, source and metadata so that a filtered
-- vector search reads one table. The vector column has no fixed dimension (the model decides);
-- one partial HNSW index per dimension is created when the first collection of that dimension is.
CREATE TABLE chunks (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id   uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    collection    text NOT NULL,
    source        text NOT NULL,
    ordinal       int  NOT NULL,
    text          text NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}',
    embedding_dim int  NOT NULL,
    embedding     vector NOT NULL
);

CREATE INDEX chunks_document_idx ON chunks (document_id);
CREATE INDEX chunks_collection_idx ON chunks (collection);
CREATE INDEX chunks_metadata_idx ON chunks USING gin (metadata jsonb_path_ops);
