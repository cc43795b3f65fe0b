"""Helpers of the tenant tests: the cluster they run against, keys, ingestion, waiting."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ragserve.db.api_keys import ApiKeyStore
from ragserve.db.pool import Database
from support import Proc

LLM_KEY = "sk-llm-secret-0d6f3c8e"
DB_PASSWORD = "pg-secret-7a91b2"  # the embedded server trusts its socket: any password works

A_HR = "Tenant A handbook: full-time employees get 25 days of paid annual leave."
B_HR = "Tenant B handbook: full-time employees get 12 days of paid annual leave."
A_ONLY = "The guest Wi-Fi network of tenant A is called Lumen-Guest."


@dataclass
class Cluster:
    urls: list[str]
    procs: list[Proc]
    env: dict[str, str]
    keys: dict[str, str]
    seeded: dict[str, Any] = field(default_factory=dict)

    def client(self, who: str | None, replica: int = 0, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.Client(base_url=self.urls[replica], headers={**auth, **headers}, timeout=30)


def with_password(url: str, password: str) -> str:
    return url.replace("postgres:@", f"postgres:{password}@", 1)


async def create_keys(url: str) -> dict[str, str]:
    db = Database(url, max_size=2)
    await db.open()  # migrates
    try:
        store = ApiKeyStore(db)
        return {
            "a": (await store.create("a"))[1],
            "b": (await store.create("b"))[1],
            "admin": (await store.create("ops", admin=True))[1],
        }
    finally:
        await db.close()


def wait_done(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not done in {timeout}s")


def ingest(client: httpx.Client, collection: str, source: str, text: str) -> dict[str, Any]:
    response = client.post(
        f"/v1/collections/{collection}/documents",
        json={"documents": [{"source": source, "text": text}]},
    )
    assert response.status_code == 202, response.text
    job = wait_done(client, response.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job
