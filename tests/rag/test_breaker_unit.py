"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from ragserve.errors import CircuitOpen, ProviderError, TransientProviderError
from ragserve.kb.breaker import CircuitBreaker, breakers_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def call(breaker: CircuitBreaker, exc: BaseException | None = None) -> None:
    async with breaker.guard():
        if exc is not None:
            raise exc


def new_breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("llm", failures=3, open_s=10.0, max_open_s=25.0, clock=clock)


async def test_opens_after_consecutive_failures_and_refuses_calls() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock)
    for _ in range(2):
        with pytest.raises(TransientProviderError) as raised:
            await call(breaker, TransientProviderError("503"))
        assert not isinstance(raised.value, CircuitOpen)  # below threshold: a normal retry
    assert breaker.state == "closed"
    # The failure that trips the circuit is reported as CircuitOpen: its job is parked too.
    with pytest.raises(CircuitOpen) as tripped:
        await call(breaker, TransientProviderError("503"))
    assert tripped.value.retry_after_s == pytest.approx(10.0)
    assert breaker.state == "open"
    assert breaker.opened_total == 1
    clock.now += 4
    with pytest.raises(CircuitOpen) as refused:
        await call(breaker)  # not even made
    assert refused.value.retry_after_s == pytest.approx(6.0)
    assert refused.value.provider == "llm"


async def test_success_resets_the_count() -> None:
    breaker = new_breaker(FakeClock())
    for _ in range(5):
        for _ in range(2):
            with pytest.raises(TransientProviderError):
                await call(breaker, TransientProviderError("503"))
        await call(breaker)
    assert breaker.state == "closed"
    assert breaker.opened_total == 0


async def test_permanent_errors_do_not_count() -> None:
    breaker = new_breaker(FakeClock())
    for _ in range(5):
        with pytest.raises(ProviderError):
            await call(breaker, ProviderError("400"))
    assert breaker.state == "closed"


async def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failures):
        with pytest.raises(TransientProviderError):
            await call(breaker, TransientProviderError("503"))


async def test_half_open_probe_success_closes() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock)
    await trip(breaker)
    clock.now += 10
    assert breaker.state == "half_open"
    await call(breaker)  # the probe
    assert breaker.state == "closed"
    assert breaker.describe()["consecutive_failures"] == 0


async def test_failed_probe_reopens_for_twice_as_long_up_to_the_cap() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock)
    await trip(breaker)
    for expected in (20.0, 25.0, 25.0):
        clock.now += breaker.remaining_s()
        with pytest.raises(CircuitOpen) as reopened:
            await call(breaker, TransientProviderError("503"))
        assert reopened.value.retry_after_s == pytest.approx(expected)
        assert breaker.state == "open"
    assert breaker.opened_total == 4
    clock.now += 25
    await call(breaker)
    assert breaker.state == "closed"
    # Closed again: the next outage starts from the first open period.
    await trip(breaker)
    assert breaker.remaining_s() == pytest.approx(10.0)


async def test_one_probe_at_a_time() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock)
    await trip(breaker)
    clock.now += 10
    release = asyncio.Event()

    async def slow_probe() -> None:
        async with breaker.guard():
            await release.wait()

    probe = asyncio.create_task(slow_probe())
    await asyncio.sleep(0)
    assert breaker.state == "half_open"
    for _ in range(3):
        with pytest.raises(CircuitOpen) as waiting:
            await call(breaker)
        assert 0 < waiting.value.retry_after_s <= 1.0  # come back soon: the probe decides
    release.set()
    await probe
    assert breaker.state == "closed"
    await call(breaker)


async def test_cancelled_probe_lets_another_caller_probe() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock)
    await trip(breaker)
    clock.now += 10

    async def hanging_probe() -> None:
        async with breaker.guard():
            await asyncio.Event().wait()

    probe = asyncio.create_task(hanging_probe())
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    await call(breaker)  # the next caller is the probe, and it succeeds
    assert breaker.state == "closed"


def test_breakers_of_skips_clients_without_one() -> None:
    breaker = CircuitBreaker("embeddings")

    class Remote:
        def __init__(self) -> None:
            self.breaker = breaker

    assert breakers_of(object(), Remote()) == [breaker]


def test_rejects_a_zero_threshold() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("llm", failures=0)
