"""The job store's SQL against the real schema."""

from __future__ import annotations

from ragserve.db.pool import Database
from ragserve.jobs import queries


async def test_in_flight_condition_is_the_coalescing_index_predicate(db: Database) -> None:
    """``queries.IN_FLIGHT`` and the predicate of migration 0002's unique index are one
    condition as PostgreSQL reads them, so ``ON CONFLICT ... WHERE IN_FLIGHT`` uses that index."""
    async with db.transaction() as conn:
        await conn.execute("CREATE TEMP TABLE jobs_copy (LIKE jobs) ON COMMIT DROP")
        await conn.execute(
            "CREATE UNIQUE INDEX jobs_copy_inflight ON jobs_copy (cache_key)"
            f" WHERE {queries.IN_FLIGHT}"
        )
        rows = await (
            await conn.execute(
                "SELECT c.relname AS name, pg_get_expr(i.indpred, i.indrelid, true) AS predicate"
                " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname IN ('jobs_inflight_cache_key_idx', 'jobs_copy_inflight')"
            )
        ).fetchall()
    predicates = {row["name"]: row["predicate"] for row in rows}
    assert len(predicates) == 2
    assert predicates["jobs_copy_inflight"] == predicates["jobs_inflight_cache_key_idx"]
    assert "idempotency_key IS NULL" in predicates["jobs_inflight_cache_key_idx"]
