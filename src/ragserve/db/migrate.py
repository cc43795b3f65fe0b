"""Versioned schema migrations.

Our own schema lives in ``migrations/NNNN_name.sql``, applied in order, each in its own
transaction and recorded in ``ragserve_schema_migrations``. pgqueuer's tables are installed and
upgraded by pgqueuer itself. A session advisory lock makes this safe when several processes
start at once: the first applies, the others wait and then find nothing to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from pgqueuer import Queries
from psycopg.rows import scalar_row

AnyConnection = psycopg.AsyncConnection[Any]
"""Migrations work on a connection of any row factory: they read through cursors of their own."""

_LOCK_KEY = 0x7261_6773  # "rags": one key for every ragserve installation in a database
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """Every migration shipped with this version of ragserve, oldest first."""
    found = []
    for entry in resources.files("ragserve.db").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def applied_versions(conn: AnyConnection) -> set[int]:
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute("SELECT to_regclass('ragserve_schema_migrations') IS NOT NULL")
        if not await cur.fetchone():
            return set()
        await cur.execute("SELECT version FROM ragserve_schema_migrations")
        return {int(version) for version in await cur.fetchall()}


async def schema_is_current(conn: AnyConnection) -> bool:
    wanted = {m.version for m in available_migrations()}
    return wanted <= await applied_versions(conn)


async def migrate(conn: AnyConnection) -> list[str]:
    """Apply what is missing on ``conn`` (autocommit); return the names applied."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS ragserve_schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = await applied_versions(conn)
        for migration in available_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)  # our own file, shipped in the package
                await conn.execute(
                    "INSERT INTO ragserve_schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
        queue = Queries.from_psycopg_connection(conn)
        if not await queue.schema_is_installed():
            await queue.install()
            applied_now.append("pgqueuer install")
        elif (await queue.apply_upgrade()).statements:
            applied_now.append("pgqueuer upgrade")
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
