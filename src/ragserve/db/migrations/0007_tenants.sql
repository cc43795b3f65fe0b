-- API keys and tenants (docs/SECURITY.md). Expand-only: new tables, new columns with a default,
-- new indexes. Every row written before this migration belongs to the tenant 'default', which
-- is also the tenant of every request while RAGSERVE_AUTH is off, so single-tenant data keeps
-- working as it was.

-- A key is shown once; only the SHA-256 of it is kept (the key is 256 random bits, so a fast
-- hash suffices: there is nothing to brute-force). ``prefix`` identifies a key in listings.
CREATE TABLE IF NOT EXISTS api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      text NOT NULL,
    admin       boolean NOT NULL DEFAULT false,
    hash        text NOT NULL UNIQUE,
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Collections: the primary key stays ``name``; for a tenant other than 'default' the stored
-- name is '<tenant>/<name>' ('/' is allowed in neither), so two tenants can both own 'hr',
-- and documents and chunks (which refer to the stored name) need no column of their own.
ALTER TABLE collections ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';
CREATE INDEX IF NOT EXISTS collections_tenant_idx ON collections (tenant, name);

-- Jobs: reads, lists and the per-tenant queue limit are scoped by tenant.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';
CREATE INDEX IF NOT EXISTS jobs_tenant_created_idx ON jobs (tenant, created_at DESC, id);
CREATE INDEX IF NOT EXISTS jobs_tenant_status_created_idx
    ON jobs (tenant, status, created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_tenant_active_idx ON jobs (tenant)
    WHERE status IN ('queued', 'running');

-- The answer cache's key includes the tenant (ragserve.jobs.cache); the column says whose an
-- entry is, for inspection and retention.
ALTER TABLE answer_cache ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';

-- Idempotency keys: the stored key of a tenant other than 'default' is derived from the tenant
-- and the client's key (ragserve.jobs.store), and lookups also check the job's tenant.
ALTER TABLE job_idempotency_keys ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';
