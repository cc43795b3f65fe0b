-- Idempotency keys in a table of their own, so that a submission with a key can still share
-- the computation of an identical question in flight (coalescing): a job row holds at most one
-- key, but any number of keys may name one job. Expand-only: jobs.idempotency_key stays, is
-- still read (rows written before this migration), and is no longer written.
CREATE TABLE IF NOT EXISTS job_idempotency_keys (
    key        text PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    body_hash  text NOT NULL
);
CREATE INDEX IF NOT EXISTS job_idempotency_keys_job_idx ON job_idempotency_keys (job_id);
