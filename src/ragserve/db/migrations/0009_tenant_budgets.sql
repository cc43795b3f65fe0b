-- Expand-only (see docs/DEPLOY.md, "Schema changes during a rollout"): a new table.

-- A tenant's own daily token budget, set with `ragserve keys budget`; it replaces
-- RAGSERVE_DAILY_TOKEN_BUDGET for that tenant (ragserve.jobs.usage.TokenBudget).
CREATE TABLE tenant_budgets (
    tenant        text PRIMARY KEY,
    daily_tokens  bigint NOT NULL CHECK (daily_tokens >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
