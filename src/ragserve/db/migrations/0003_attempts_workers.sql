-- Expand-only (see docs/DEPLOY.md, "Schema changes during a rollout"): new tables and
-- indexes, nothing dropped or renamed, so the previous release keeps running on this schema.

-- One row per attempt: the version that ran it, on which worker, and how it ended.
-- The job's current version is the row whose attempt equals jobs.attempts; an attempt run by
-- a release older than this migration has no row, so the job then shows no version rather
-- than a wrong one.
CREATE TABLE job_attempts (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     int  NOT NULL,
    version     text NOT NULL,
    worker_id   uuid NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- succeeded, failed or retried, written with the job's own update; null while running
    -- and for attempts that were cancelled, handed back or lost with their worker.
    outcome     text,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX job_attempts_version_started_idx ON job_attempts (version, started_at);

-- Live worker processes: each one refreshes its row every RAGSERVE_WORKER_PRESENCE_S and
-- deletes it when it stops; a row past expires_at belongs to a worker that died.
CREATE TABLE workers (
    id           uuid PRIMARY KEY,
    host         text NOT NULL,
    pid          int  NOT NULL,
    version      text NOT NULL,
    queues       text[] NOT NULL,
    running      int  NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX workers_expires_idx ON workers (expires_at);

-- Retention scans finished jobs by age.
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
