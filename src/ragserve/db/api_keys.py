"""API keys: created, listed, revoked (``ragserve keys``) and looked up (the API's auth).

A key is ``rsk_`` + 43 URL-safe characters (32 random bytes, 256 bits). Only its SHA-256 is
stored: with that much entropy a fast hash cannot be brute-forced, so no slow hash (bcrypt,
argon2) and no server-side secret are needed, and a lookup is one indexed equality (the
practice of GitHub and Stripe tokens; docs/SECURITY.md). The first 12 characters (the
``prefix``) are kept in clear to tell keys apart in listings and logs; they hold 48 of the
256 random bits, far too few to help guess the rest.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ragserve.db.pool import Database
from ragserve.errors import NotFound
from ragserve.names import check_tenant_name

KEY_MARK: Final = "rsk_"
PREFIX_CHARS: Final = 12

CACHE_LIMIT: Final = 10_000
"""Answers a verifier keeps; past it, it starts over (a burst of bad keys cannot grow it)."""

_KEY_COLUMNS = "id, tenant, admin, prefix, created_at, revoked_at"

INSERT_KEY: Final = (
    "INSERT INTO api_keys (tenant, admin, hash, prefix)"
    " VALUES (%(tenant)s, %(admin)s, %(hash)s, %(prefix)s)"
    f" RETURNING {_KEY_COLUMNS}"
)
LIST_KEYS: Final = f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY id"
REVOKE_KEY: Final = (
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %(id)s"
    f" RETURNING {_KEY_COLUMNS}"
)
SELECT_ACTIVE_KEY: Final = (
    "SELECT id, tenant, admin FROM api_keys WHERE hash = %(hash)s AND revoked_at IS NULL"
)


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never the key itself."""

    id: int
    tenant: str
    admin: bool
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class KeyGrant:
    """What a valid, unrevoked key lets its bearer act as."""

    key_id: int
    tenant: str
    admin: bool


def new_key() -> str:
    return KEY_MARK + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, tenant: str, *, admin: bool = False) -> tuple[ApiKey, str]:
        """A new key for ``tenant``: its record, and the key itself (to show once)."""
        check_tenant_name(tenant)
        key = new_key()
        params = {
            "tenant": tenant,
            "admin": admin,
            "hash": hash_key(key),
            "prefix": key[:PREFIX_CHARS],
        }
        async with self.db.connection() as conn:
            row = await (await conn.execute(INSERT_KEY, params)).fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row
        return ApiKey(**row), key

    async def list(self) -> list[ApiKey]:
        async with self.db.connection() as conn:
            rows = await (await conn.execute(LIST_KEYS)).fetchall()
        return [ApiKey(**row) for row in rows]

    async def revoke(self, key_id: int) -> ApiKey:
        """Revoke a key (revoking it again keeps the first revocation's time)."""
        async with self.db.connection() as conn:
            row = await (await conn.execute(REVOKE_KEY, {"id": key_id})).fetchone()
        if row is None:
            raise NotFound(f"no API key with id {key_id}")
        return ApiKey(**row)

    async def grant_by_hash(self, digest: str) -> KeyGrant | None:
        """What the key of SHA-256 ``digest`` grants; None if it is unknown or revoked."""
        async with self.db.connection() as conn:
            cur = await conn.execute(SELECT_ACTIVE_KEY, {"hash": digest})
            row = await cur.fetchone()
        if row is None:
            return None
        return KeyGrant(key_id=row["id"], tenant=row["tenant"], admin=row["admin"])


class KeyVerifier:
    """Checks keys against the database, remembering each answer for ``ttl_s``."""

    def __init__(self, keys: ApiKeyStore, ttl_s: float) -> None:
        self.keys = keys
        self.ttl_s = ttl_s
        self._seen: dict[str, tuple[float, KeyGrant | None]] = {}

    async def grant(self, key: str) -> KeyGrant | None:
        digest = hash_key(key)  # the cache holds no usable key
        now = time.monotonic()
        seen = self._seen.get(digest)
        if seen is not None and seen[0] > now:
            return seen[1]
        grant = await self.keys.grant_by_hash(digest)
        if len(self._seen) >= CACHE_LIMIT:
            self._seen.clear()
        self._seen[digest] = (now + self.ttl_s, grant)
        return grant
