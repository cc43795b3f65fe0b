-- Jobs, their event log, uploaded files of ingest jobs, and the answer cache.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind             text NOT NULL CHECK (kind IN ('answer', 'ingest')),
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    collection       text NOT NULL,
    query            text,
    request          jsonb NOT NULL,
    -- Every try counts; the current attempt number fences writes from older attempts.
    attempts         int NOT NULL DEFAULT 0,
    -- Tries allowed before the job is dead-lettered; raised by a manual retry or a hand-back.
    max_attempts     int NOT NULL,
    cached           boolean NOT NULL DEFAULT false,
    cache_key        text,
    idempotency_key  text UNIQUE,
    request_hash     text NOT NULL,
    -- Last event number; bumped under the row lock, so events of one job never collide.
    event_seq        int NOT NULL DEFAULT 0,
    result           jsonb,
    error            jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id);
CREATE INDEX jobs_status_created_idx ON jobs (status, created_at DESC);
-- At most one computation in flight per cache key: identical questions coalesce onto it.
-- Requests with an Idempotency-Key always get a job of their own, so they are left out.
CREATE UNIQUE INDEX jobs_inflight_cache_key_idx ON jobs (cache_key)
    WHERE status IN ('queued', 'running') AND cache_key IS NOT NULL
      AND idempotency_key IS NULL;

CREATE TABLE job_events (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq        int  NOT NULL,
    attempt    int  NOT NULL,
    type       text NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

-- Live delivery: every stored event wakes the API processes streaming that job.
CREATE FUNCTION ragserve_notify_job_event() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ragserve_job_events', NEW.job_id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION ragserve_notify_job_event();

-- Files uploaded for an ingest job, kept until the job has ingested them, so that any
-- worker process (not only the API process that received them) can run the job.
CREATE TABLE job_files (
    job_id   uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ordinal  int  NOT NULL,
    source   text NOT NULL,
    data     bytea,
    text     text,
    metadata jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (job_id, ordinal)
);

CREATE TABLE answer_cache (
    cache_key   text PRIMARY KEY,
    collection  text NOT NULL,
    -- The collection's generation when the answer was computed; any change bumps it.
    generation  bigint NOT NULL,
    job_id      uuid NOT NULL,
    result      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX answer_cache_expires_idx ON answer_cache (expires_at);
