"""Usage per tenant and UTC day (jobs and tokens), and the daily token budget.

One row per tenant and day in ``usage`` (migration 0008), grown by an upsert in the statement
that stores a successful attempt's result (``JobStore.succeed``): a job counts once, when it
succeeds; failed attempts are not counted (a provider reports no usage for a cut stream).

Tokens: prompt and completion tokens are the LLM provider's ``usage`` when it reports it, else
estimated (``ragserve.text.estimate_tokens``); embedding tokens are estimated the same way,
for a question's query and for every chunk an ingest embeds; an app job's are the
``usage_metadata`` its chat models report (``ragserve.jobs.app_streams``). An answer from the
cache costs nothing and is not counted.

The budget (``RAGSERVE_DAILY_TOKEN_BUDGET``, the same for every tenant) is checked when a new
answer or app job is submitted, before any LLM call: once a tenant's tokens of the day reach
it, new answer and app jobs get ``429`` until the next UTC midnight. Jobs accepted before stay
queued and run: they were promised with a ``202``, so a tenant may overspend by what it had
queued.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ragserve.db.pool import Connection
from ragserve.errors import BudgetExhausted

COUNT_SUCCEEDED_JOB: Final = (
    "usage_counted AS (INSERT INTO usage AS u (tenant, day, jobs, prompt_tokens,"
    " completion_tokens, embedding_tokens) SELECT %(usage_tenant)s,"
    " (now() AT TIME ZONE 'UTC')::date, 1, %(prompt_tokens)s, %(completion_tokens)s,"
    " %(embedding_tokens)s FROM job"
    " WHERE %(usage_tenant)s::text IS NOT NULL"
    " ON CONFLICT (tenant, day) DO UPDATE SET jobs = u.jobs + 1,"
    " prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,"
    " completion_tokens = u.completion_tokens + excluded.completion_tokens,"
    " embedding_tokens = u.embedding_tokens + excluded.embedding_tokens)"
)
"""A CTE for the statement that stores a successful attempt (``queries.SUCCEED``, whose updated
job is the CTE ``job``): counts the job and its tokens on the tenant's row of today (UTC), in
the same statement, so only a result actually stored is counted, once. A null
``usage_tenant`` counts nothing (``usage_tenant``, not ``tenant``: the statement's ``tenant``
is the job's, for its cache entry)."""

SELECT_USAGE: Final = (
    "SELECT tenant, day, jobs, prompt_tokens, completion_tokens, embedding_tokens FROM usage"
    " WHERE tenant = %(tenant)s AND day BETWEEN %(from)s AND %(to)s ORDER BY day, tenant"
)

SELECT_ALL_USAGE: Final = (
    "SELECT tenant, day, jobs, prompt_tokens, completion_tokens, embedding_tokens FROM usage"
    " WHERE day BETWEEN %(from)s AND %(to)s ORDER BY day, tenant"
)
"""Every tenant's rows (for an administrator)."""

TOKENS_TODAY: Final = (
    "SELECT (SELECT coalesce(sum(prompt_tokens + completion_tokens + embedding_tokens), 0)"
    " FROM usage WHERE tenant = %(tenant)s AND day = (now() AT TIME ZONE 'UTC')::date)::bigint"
    " AS tokens,"
    " (SELECT daily_tokens FROM tenant_budgets WHERE tenant = %(tenant)s) AS own_budget"
)
SET_TENANT_BUDGET: Final = (
    "INSERT INTO tenant_budgets (tenant, daily_tokens) VALUES (%(tenant)s, %(daily_tokens)s)"
    " ON CONFLICT (tenant) DO UPDATE SET daily_tokens = excluded.daily_tokens,"
    " updated_at = now()"
)
CLEAR_TENANT_BUDGET: Final = "DELETE FROM tenant_budgets WHERE tenant = %(tenant)s"


async def set_tenant_budget(conn: Connection, tenant: str, daily_tokens: int | None) -> None:
    """Give ``tenant`` a daily token budget of its own; None: back to the default
    (``RAGSERVE_DAILY_TOKEN_BUDGET``). API processes see the change within a second."""
    if daily_tokens is None:
        await conn.execute(CLEAR_TENANT_BUDGET, {"tenant": tenant})
    else:
        await conn.execute(SET_TENANT_BUDGET, {"tenant": tenant, "daily_tokens": daily_tokens})


@dataclass(frozen=True)
class TokenUsage:
    """What one successful attempt cost."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0

    @classmethod
    def from_event(cls, usage: Mapping[str, Any] | None) -> TokenUsage:
        """From the ``usage`` of the answer pipeline's ``answer`` event (absent: nothing)."""
        usage = usage or {}

        def count(name: str) -> int:
            value = usage.get(name)
            return value if isinstance(value, int) and value > 0 else 0

        return cls(count("prompt_tokens"), count("completion_tokens"), count("embedding_tokens"))

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.embedding_tokens + other.embedding_tokens,
        )

    def params(self, tenant: str | None) -> dict[str, Any]:
        """The parameters of ``COUNT_SUCCEEDED_JOB``."""
        return {
            "usage_tenant": tenant,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "embedding_tokens": self.embedding_tokens,
        }


async def usage_rows(
    conn: Connection, tenant: str | None, first: dt.date, last: dt.date
) -> list[dict[str, Any]]:
    """Rows from ``first`` to ``last`` (both included) of ``tenant``; None: every tenant."""
    params: dict[str, Any] = {"from": first, "to": last}
    if tenant is None:
        return await (await conn.execute(SELECT_ALL_USAGE, params)).fetchall()
    return await (await conn.execute(SELECT_USAGE, {**params, "tenant": tenant})).fetchall()


def seconds_to_utc_midnight(now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return (midnight - now).total_seconds()


class TokenBudget:
    """The daily token budget check of one process; each tenant's count is read at most once
    per ``ttl_s`` (submissions are the hot path), so a burst may pass the budget by what is
    submitted within that second."""

    def __init__(
        self,
        daily_tokens: int | None,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.daily_tokens = daily_tokens
        self.ttl_s = ttl_s
        self._clock = clock
        self._used: dict[str, tuple[float, int, int | None]] = {}

    async def check(self, conn: Connection, tenant: str) -> None:
        """Raise ``BudgetExhausted`` when ``tenant`` has used its tokens of today: its own
        budget (``ragserve keys budget``) if it has one, else ``daily_tokens``."""
        used, own_budget = await self.used_today(conn, tenant)
        budget = own_budget if own_budget is not None else self.daily_tokens
        if budget is not None and used >= budget:
            source = (
                "its own budget, ragserve keys budget"
                if own_budget is not None
                else "RAGSERVE_DAILY_TOKEN_BUDGET"
            )
            raise BudgetExhausted(
                f"tenant {tenant!r} has used {used} of its {budget} tokens of today"
                f" ({source}); new answer and app jobs are accepted again after midnight UTC",
                retry_after_s=seconds_to_utc_midnight(),
            )

    async def used_today(self, conn: Connection, tenant: str) -> tuple[int, int | None]:
        """Tokens ``tenant`` used today, and its own budget (None: it has none)."""
        read_at, used, own_budget = self._used.get(tenant, (float("-inf"), 0, None))
        if self._clock() - read_at > self.ttl_s:
            row = await (await conn.execute(TOKENS_TODAY, {"tenant": tenant})).fetchone()
            used = int(row["tokens"]) if row else 0
            own_budget = int(row["own_budget"]) if row and row["own_budget"] is not None else None
            self._used[tenant] = (self._clock(), used, own_budget)
        return used, own_budget
