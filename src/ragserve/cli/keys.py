"""``ragserve keys create|list|revoke|budget``: API keys and tenants' token budgets, in-process
on the database (like ``ingest``).

``create`` prints the key once, alone on its last line (so ``| tail -1`` captures it); only
its hash is stored. ``list`` never shows a key, only its first characters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from ragserve.db.api_keys import ApiKey, ApiKeyStore
from ragserve.db.pool import Database
from ragserve.jobs.usage import set_tenant_budget
from ragserve.names import check_tenant_name
from ragserve.settings import Settings

T = TypeVar("T")


async def _with_keys(settings: Settings, work: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    db = await Database.from_settings(settings)
    await db.open()
    try:
        return await work(ApiKeyStore(db))
    finally:
        await db.close()


async def create_key(settings: Settings, tenant: str, admin: bool, console: Console) -> None:
    record, key = await _with_keys(settings, lambda keys: keys.create(tenant, admin=admin))
    kind = "admin key" if record.admin else "key"
    console.print(
        f"created {kind} {record.id} for tenant {record.tenant!r} (prefix {record.prefix});"
        " it is shown once, store it now:",
        markup=False,
    )
    if not settings.auth_enabled:
        console.print("note: RAGSERVE_AUTH is not api_key, so the API does not ask for keys yet")
    print(key)  # alone on the last line, never wrapped or styled


async def list_keys(settings: Settings, console: Console) -> None:
    keys = await _with_keys(settings, lambda store: store.list())
    table = Table("id", "tenant", "admin", "prefix", "created", "revoked")
    for k in keys:
        table.add_row(
            str(k.id), k.tenant, "yes" if k.admin else "", k.prefix, _when(k), _revoked(k)
        )
    console.print(table)


async def revoke_key(settings: Settings, key_id: int, console: Console) -> None:
    record = await _with_keys(settings, lambda keys: keys.revoke(key_id))
    console.print(
        f"revoked key {record.id} of tenant {record.tenant!r} ({record.prefix});"
        f" every API process refuses it within {settings.auth_cache_s:g} s",
        markup=False,
    )


def _when(key: ApiKey) -> str:
    return key.created_at.isoformat(timespec="seconds")


def _revoked(key: ApiKey) -> str:
    return key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""


async def set_budget(
    settings: Settings, tenant: str, daily_tokens: int | None, console: Console
) -> None:
    check_tenant_name(tenant)
    db = await Database.from_settings(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            await set_tenant_budget(conn, tenant, daily_tokens)
    finally:
        await db.close()
    default = settings.daily_token_budget
    if daily_tokens is None:
        what = f"the default ({default} tokens)" if default is not None else "no budget"
        console.print(f"tenant {tenant!r} now has {what} (RAGSERVE_DAILY_TOKEN_BUDGET)")
    else:
        console.print(f"tenant {tenant!r} may now use {daily_tokens} tokens a day (UTC)")
