-- Expand-only (see docs/DEPLOY.md, "Schema changes during a rollout"): a new table and a new
-- nullable column; the previous release keeps running on this schema.

-- Tokens and jobs per tenant and UTC day, one row each, grown by upserts when an attempt
-- succeeds (ragserve.jobs.usage). Read by GET /v1/usage and the daily token budget.
CREATE TABLE usage (
    tenant            text   NOT NULL,
    day               date   NOT NULL,
    jobs              bigint NOT NULL DEFAULT 0,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    embedding_tokens  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
CREATE INDEX usage_day_idx ON usage (day);

-- Job slots of each live worker (its RAGSERVE_WORKER_CONCURRENCY), so that any API replica
-- can estimate a queue's service rate (ragserve.jobs.estimates). Null for workers of a
-- release older than this migration: the API then assumes its own setting.
ALTER TABLE workers ADD COLUMN concurrency int;

-- The service time of recent jobs of a queue: newest finished first. The expression is the
-- queue a job runs on (ragserve.jobs.estimates.JOB_QUEUE, written identically): its app's
-- ('rag' runs on 'answer', any other app on its own name), else its kind.
CREATE INDEX jobs_queue_finished_idx
    ON jobs ((coalesce(CASE WHEN app = 'rag' THEN 'answer' ELSE app END, kind)), finished_at DESC)
    WHERE finished_at IS NOT NULL AND NOT cached;
