"""The token bucket of ``RAGSERVE_RATE_LIMIT_RPS``, on a clock the test moves."""

from __future__ import annotations

import pytest

from ragserve.api.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_requests_wait_for_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=5, burst=10, clock=clock)
    assert [limiter.wait_s("key-a") for _ in range(10)] == [0.0] * 10
    assert limiter.wait_s("key-a") == pytest.approx(0.2)  # one token every 1/5 s
    clock.now += 0.2
    assert limiter.wait_s("key-a") == 0.0
    assert limiter.wait_s("key-a") > 0


def test_callers_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock())
    assert limiter.wait_s("key-a") == 0.0
    assert limiter.wait_s("key-a") == pytest.approx(1.0)
    assert limiter.wait_s("key-b") == 0.0


def test_a_caller_rate_overrides_the_default() -> None:
    limiter = RateLimiter(rate=1, clock=Clock())
    passed = sum(limiter.wait_s("fast", rate=50) == 0.0 for _ in range(200))
    assert passed == 100  # the burst of a 50/s key: two seconds' worth
    assert sum(limiter.wait_s("slow") == 0.0 for _ in range(200)) == 2


def test_memory_is_bounded_by_the_number_of_callers_kept() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock(), max_callers=3)
    for caller in ("a", "b", "c", "d"):
        limiter.wait_s(caller)
    assert len(limiter._buckets) == 3
    assert limiter.wait_s("a") == 0.0  # forgotten, so it starts with a full bucket again
