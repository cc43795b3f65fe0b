-- Apps (docs/APPS.md): a user's own LangChain Runnable as a durable job.
-- Expand-only (see docs/DEPLOY.md, "Schema changes during a rollout"): one nullable column and
-- a wider check on jobs.kind; the previous release writes only 'answer' and 'ingest', which the
-- new check accepts, and never reads the new column.

-- The app that runs the job: 'rag' (the built-in pipeline) for answer jobs, the app's name for
-- jobs of kind 'app'; null for ingest jobs and for jobs written before this migration.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS app text;

-- jobs.kind gains 'app'. A CHECK constraint cannot be widened in place: the new one is added
-- NOT VALID (no table scan under an exclusive lock), then validated (a scan that lets reads
-- and writes go on), and only then is the narrower original removed. This is the one
-- removal tests/db/test_expand_only.py allows (WIDENED_CHECKS): a check that accepts more rows
-- does not break the release before it.
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check_apps
    CHECK (kind IN ('answer', 'ingest', 'app')) NOT VALID;
ALTER TABLE jobs VALIDATE CONSTRAINT jobs_kind_check_apps;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
