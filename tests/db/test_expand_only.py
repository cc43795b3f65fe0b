"""Migrations from 0003 on are expand-only (docs/DEPLOY.md, "Schema changes during a rollout"):
the release before a migration keeps running on the schema it leaves."""

from __future__ import annotations

import re

import pytest

from ragserve.db.migrate import Migration, available_migrations

FIRST_EXPAND_ONLY = 3  # 0001 and 0002 predate rolling upgrades

CONTRACTING = [
    (re.compile(r"\bDROP\s+(TABLE|COLUMN|INDEX|TYPE|FUNCTION|TRIGGER|CONSTRAINT|VIEW)\b", re.I),
     "drops"),
    (re.compile(r"\bRENAME\b", re.I), "renames"),
    (re.compile(r"\bALTER\s+COLUMN\s+\w+\s+(SET\s+DATA\s+)?TYPE\b", re.I), "changes a type"),
    (re.compile(r"\bSET\s+NOT\s+NULL\b", re.I), "narrows a column"),
    (re.compile(r"\bADD\s+COLUMN\b[^,;]*\bNOT\s+NULL\b(?![^,;]*\bDEFAULT\b)", re.I),
     "adds a NOT NULL column without a default"),
]  # fmt: skip


WIDENED_CHECKS = {
    # 0006: jobs.kind also accepts 'app'. The wider check is added (NOT VALID, then validated)
    # in the same migration before the narrower original goes: every row the previous release
    # writes still passes, so this removal does not contract the schema.
    "apps": re.compile(
        r"ALTER\s+TABLE\s+jobs\s+DROP\s+CONSTRAINT\s+IF\s+EXISTS\s+jobs_kind_check\s*;", re.I
    ),
}
"""The only removals allowed: a CHECK constraint replaced by a wider one, by migration name."""


def expand_only_migrations() -> list[Migration]:
    return [m for m in available_migrations() if m.version >= FIRST_EXPAND_ONLY]


def contracting_statements(sql: str) -> list[str]:
    code = re.sub(r"--[^\n]*", "", sql)  # comments may say what is not done
    return [why for pattern, why in CONTRACTING if pattern.search(code)]


@pytest.mark.parametrize("migration", expand_only_migrations(), ids=lambda m: m.name)
def test_migration_only_expands(migration: Migration) -> None:
    sql = migration.sql
    if (widened := WIDENED_CHECKS.get(migration.name)) is not None:
        assert widened.search(sql), f"{migration.name} no longer widens its check as declared"
        sql = widened.sub("", sql)
    assert contracting_statements(sql) == []


def test_the_check_catches_contracting_statements() -> None:
    assert contracting_statements("ALTER TABLE jobs DROP COLUMN query;") == ["drops"]
    assert contracting_statements("ALTER TABLE jobs RENAME COLUMN a TO b;") == ["renames"]
    assert contracting_statements("ALTER TABLE jobs ALTER COLUMN a TYPE int;") == ["changes a type"]
    assert contracting_statements("ALTER TABLE jobs ADD COLUMN x int NOT NULL;") == [
        "adds a NOT NULL column without a default"
    ]
    assert contracting_statements("ALTER TABLE jobs ADD COLUMN x int NOT NULL DEFAULT 0;") == []
    assert contracting_statements("-- we never DROP TABLE here\nCREATE TABLE t (a int);") == []
