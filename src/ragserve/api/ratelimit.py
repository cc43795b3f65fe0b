"""Requests per second per API key: a token bucket per caller, in this process.

Why per replica and not shared through PostgreSQL: the limit is there to stop a flood (a
script in a loop, a misconfigured client) before it costs anything, and a shared bucket would
add a database round trip to every request, which is the very cost it is meant to spare
(a submission is ~1 ms of PostgreSQL CPU). With N API replicas behind a balancer a caller
gets at most N times the rate; set ``RAGSERVE_RATE_LIMIT_RPS`` to the total divided by N.
The exact, shared limits are the per-tenant queue limit and the daily token budget, which
are checked in the database when a job is created.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_CALLERS = 10_000
"""Buckets kept at most; the least recently seen caller's bucket goes first (a full bucket
is the same as no bucket, so forgetting an idle caller loses nothing that matters)."""


@dataclass
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each request takes one."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0 if a token was taken, else the seconds until one will be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per caller (an API key's id, or the client's address without keys)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = MAX_CALLERS,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 2 * rate)
        self._clock = clock
        self._max_callers = max_callers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def wait_s(self, caller: str, rate: float | None = None) -> float:
        """Take a token for ``caller``: 0 when the request may pass, else when to retry.

        ``rate`` overrides the default for this caller (a key with a rate of its own)."""
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            per_caller = rate or self.rate
            burst = self.burst if rate is None else max(1.0, 2 * rate)
            bucket = TokenBucket(per_caller, burst, burst, now)
            self._buckets[caller] = bucket
            if len(self._buckets) > self._max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
        return bucket.take(now)
