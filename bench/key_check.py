"""The cost of an API key check, in-process: what ``RAGSERVE_AUTH=api_key`` adds to a request.

Measures ``KeyVerifier.grant`` (what the auth dependency calls) on a real embedded PostgreSQL:
a key remembered from the last ``RAGSERVE_AUTH_CACHE_S`` (the common case: SHA-256 of the key
and a dictionary lookup), and a key checked against the database (TTL 0: one indexed query
through the pool, as once per key, process and 2 s). End-to-end ingress with auth on and off
is ``bench/ingress.py --auth both``; on a shared machine its difference drowns in noise, which
is why this measures the check alone.

Run (about ten seconds)::

    python bench/key_check.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from _common import bench_parser, machine_info, machine_line
from concurrency import data_folder, scratch_dir
from ragserve.db.api_keys import ApiKeyStore, KeyVerifier
from ragserve.db.embedded import start_embedded_server
from ragserve.db.pool import Database


async def per_call_us(call: Callable[[], Awaitable[object]], n: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean time of one call, in microseconds."""
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            await call()
        means.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(means)


async def measure(url: str, hits: int, misses: int) -> dict[str, float]:
    db = Database(url, max_size=2)
    await db.open()
    try:
        store = ApiKeyStore(db)
        _, key = await store.create("bench")
        cached = KeyVerifier(store, ttl_s=3600)
        uncached = KeyVerifier(store, ttl_s=0)
        assert await cached.grant(key) is not None
        return {
            "cached_us": await per_call_us(lambda: cached.grant(key), hits),
            "database_us": await per_call_us(lambda: uncached.grant(key), misses),
            "unknown_key_database_us": await per_call_us(
                lambda: uncached.grant("rsk_unknown"), misses
            ),
        }
    finally:
        await db.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--hits", type=int, default=100_000, help="cached checks per round")
    parser.add_argument("--misses", type=int, default=500, help="database checks per round")
    args = parser.parse_args(argv)
    info = machine_info()
    with scratch_dir("ragserve-bench-keys-") as scratch:
        url = start_embedded_server(data_folder(scratch, "data"))
        result = asyncio.run(measure(url, args.hits, args.misses))
    print("| key check | µs per request (median of 5 rounds) |\n|---|---|")
    print(f"| remembered (within RAGSERVE_AUTH_CACHE_S) | {result['cached_us']:.2f} |")
    print(f"| from the database (valid key) | {result['database_us']:.0f} |")
    print(f"| from the database (unknown key) | {result['unknown_key_database_us']:.0f} |")
    print(f"\n{machine_line(info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
