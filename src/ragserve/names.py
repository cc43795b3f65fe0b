"""Names and ids that several layers check: collection and tenant names, and UUIDs.

A leaf module: it imports nothing from ragserve but ``errors``, so the API, the job service and
the knowledge base can all use it without depending on each other.
"""

from __future__ import annotations

import re
import uuid

from ragserve.errors import InvalidInput

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""1-64 letters, digits, ``_``, ``.`` or ``-``, starting with a letter or digit."""


def check_collection_name(name: str) -> str:
    """``name`` if it is a valid collection name; else ``InvalidInput`` saying what is allowed."""
    if not COLLECTION_NAME.match(name):
        raise InvalidInput(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return name


DEFAULT_TENANT = "default"
"""The tenant of every request while authentication is off, and of all data written before
tenants existed (migration 0007)."""

TENANT_NAME = COLLECTION_NAME
"""Tenant names follow the rules of collection names (no '/', which joins the two in storage)."""


def check_tenant_name(name: str) -> str:
    """``name`` if it is a valid tenant name; else ``InvalidInput`` saying what is allowed."""
    if not TENANT_NAME.match(name):
        raise InvalidInput(
            f"invalid tenant name {name!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return name


def is_uuid(value: str) -> bool:
    """Whether ``value`` parses as a UUID (ids of jobs and documents are UUIDs)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
