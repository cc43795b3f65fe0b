"""Who is calling: ``Authorization: Bearer KEY`` becomes a :class:`Principal`.

The app factory puts :data:`REQUIRE_KEY` on every router but the health one, so a new router
is protected unless it is deliberately mounted without it (``tests/tenants`` walks every route
of ``/openapi.json``). Routes that need the tenant take a :data:`Caller` parameter; FastAPI
runs the dependency once per request either way.

Verified keys are remembered for ``RAGSERVE_AUTH_CACHE_S`` (2 s) per process, so a request
costs a dictionary lookup, not a query, and a revocation reaches every replica within that
time (docs/SECURITY.md). Unknown keys are remembered as well, so a client hammering with a bad
key costs no query either.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ragserve.api.deps import State
from ragserve.api.schemas import Responses, error_doc
from ragserve.errors import Forbidden, RateLimited, Unauthorized
from ragserve.names import DEFAULT_TENANT, check_tenant_name

TENANT_HEADER = "X-Ragserve-Tenant"
"""Sent with an admin key: act as this tenant (its collections, jobs, cache)."""


@dataclass(frozen=True)
class Principal:
    """The caller: the tenant whose collections it names, and whether it is an admin."""

    tenant: str
    admin: bool = False
    all_tenants: bool = False
    """An admin without ``X-Ragserve-Tenant``: lists and reads by id span every tenant."""

    @property
    def scope(self) -> str | None:
        """The tenant that reads by id and lists are limited to; None for all of them."""
        return None if self.all_tenants else self.tenant

    def acting_as(self, tenant: str | None) -> Principal:
        """The principal of a request that names ``tenant`` in ``X-Ragserve-Tenant``."""
        if tenant is None:
            return replace(self, all_tenants=self.admin)
        if not self.admin:
            raise Forbidden(f"{TENANT_HEADER} needs an admin key")
        return Principal(check_tenant_name(tenant), admin=True)


ANONYMOUS = Principal(DEFAULT_TENANT)
"""Every request while ``RAGSERVE_AUTH`` is off."""


bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `ragserve keys create` (when RAGSERVE_AUTH=api_key).",
)


async def authenticate(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller of this request; ``Unauthorized`` (401) without a valid key."""
    if state.keys is None:  # RAGSERVE_AUTH off
        principal = ANONYMOUS
        caller = f"address {request.client.host if request.client else 'unknown'}"
    else:
        if credentials is None:
            raise Unauthorized("send an API key: Authorization: Bearer KEY")
        grant = await state.keys.grant(credentials.credentials)
        if grant is None:
            raise Unauthorized("invalid or revoked API key")
        principal = Principal(grant.tenant, admin=grant.admin)
        caller = f"key {grant.key_id}"
    if state.rate_limiter is not None:
        # After the key check: a bad key gets its 401 without using anyone's tokens.
        retry_s = state.rate_limiter.wait_s(caller)
        if retry_s > 0:
            raise RateLimited(
                f"{caller} sends more than RAGSERVE_RATE_LIMIT_RPS"
                f" ({state.rate_limiter.rate:g}) requests a second; retry in {retry_s:.2f} s",
                retry_after_s=retry_s,
            )
    return principal.acting_as(request.headers.get(TENANT_HEADER))


Caller = Annotated[Principal, Depends(authenticate)]

REQUIRE_KEY: list[DependsParam] = [Depends(authenticate)]
"""The dependencies of every router but the health one."""

AUTH_RESPONSES: Responses = {
    401: error_doc("No valid API key (RAGSERVE_AUTH=api_key); see WWW-Authenticate"),
    403: error_doc(f"{TENANT_HEADER} sent with a key that is not an admin key"),
    429: error_doc("Over a limit (RAGSERVE_RATE_LIMIT_RPS and others); see Retry-After"),
}


def protected(**kwargs: Any) -> dict[str, Any]:
    """Keyword arguments of ``include_router`` for a router that needs a key."""
    return {"dependencies": REQUIRE_KEY, "responses": AUTH_RESPONSES, **kwargs}
