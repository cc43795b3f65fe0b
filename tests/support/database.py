"""Database URLs for tests."""

from __future__ import annotations


def with_database(url: str, name: str) -> str:
    """The same server URL, pointing at database ``name``."""
    head, _, tail = url.partition("/postgres?")
    return f"{head}/{name}?{tail}" if tail else url.rsplit("/", 1)[0] + f"/{name}"
