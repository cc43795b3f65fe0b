"""``RAGSERVE_RATE_LIMIT_RPS`` over HTTP: a token bucket per API key, in each API process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from support import Proc, service_env
from tenants.helpers import create_keys

RPS = 2  # bursts of 2 * RPS pass at once


def test_each_key_has_its_own_bucket_and_the_excess_gets_429_with_retry_after(
    new_database_url: Callable[[], str], start_service: Callable[..., tuple[str, Proc]]
) -> None:
    url = new_database_url()
    keys = asyncio.run(create_keys(url))
    base, _ = start_service(service_env(url, auth="api_key", rate_limit_rps=RPS), command="api")

    def client(key: str) -> httpx.Client:
        return httpx.Client(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {keys[key]}"}
        )

    with client("a") as a, client("b") as b, httpx.Client(base_url=base, timeout=30) as anon:
        statuses = [a.get("/v1/collections").status_code for _ in range(4 * RPS)]
        assert statuses[: 2 * RPS] == [200] * (2 * RPS), statuses  # the burst passes
        assert 429 in statuses[2 * RPS :], statuses
        refused = a.get("/v1/collections")
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 1 + 1 / RPS
        error = refused.json()["error"]
        assert error["type"] == "RateLimited", error
        assert "RAGSERVE_RATE_LIMIT_RPS (2)" in error["message"], error
        assert keys["a"] not in error["message"]  # the key's id is named, never the key
        # Another key is not slowed by a's flood; a bad key gets 401, not a's 429.
        assert b.get("/v1/collections").status_code == 200
        bad = anon.get("/v1/collections", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        # Health and metrics are never limited (orchestrators poll them).
        assert all(anon.get("/readyz").status_code == 200 for _ in range(4 * RPS))
