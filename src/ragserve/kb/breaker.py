"""A circuit breaker around a model endpoint (the LLM, the embeddings endpoint).

States: ``closed`` (calls pass), ``open`` (calls are refused at once with ``CircuitOpen``),
``half_open`` (one probe call passes; its success closes the circuit, its failure opens it
again for twice as long, up to ``max_open_s``). ``failures`` consecutive transient failures
open a closed circuit; any success resets the count.

Why: during an outage every attempt would otherwise hit the endpoint, fail, and consume one of
the job's attempts, so a long outage dead-letters every job. With the breaker the worker parks
jobs (re-queues them for the remaining open time, attempt refunded) and only the probe reaches
the endpoint.

Per process, not shared: each process learns of an outage by itself after ``failures`` calls,
so N workers spend at most N x ``failures`` calls (plus one probe each per open period) per
outage. That bound is small and needs no database round trip on every model call; sharing the
state through PostgreSQL would save a few calls and make the model path depend on the database.

Single event loop (asyncio): the methods never await, so each runs atomically in the loop;
no lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Literal

from ragserve.errors import CircuitOpen, TransientProviderError
from ragserve.settings import Settings

CircuitState = Literal["closed", "half_open", "open"]
STATE_VALUES: dict[CircuitState, int] = {"closed": 0, "half_open": 1, "open": 2}
"""The gauge value of each state (``ragserve_circuit_state``)."""


class CircuitBreaker:
    """Consecutive-failure breaker with an open period that doubles while probes fail."""

    def __init__(
        self,
        provider: str,
        *,
        failures: int = 5,
        open_s: float = 10.0,
        max_open_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be >= 1")
        self.provider = provider
        self.failures = failures
        self.open_s = open_s
        self.max_open_s = max(max_open_s, open_s)
        self.opened_total = 0  # how many times the circuit opened (a counter)
        self._clock = clock
        self._consecutive = 0
        self._open_for = open_s
        self._opened_at: float | None = None  # None: closed
        self._probing = False

    @classmethod
    def from_settings(cls, provider: str, settings: Settings) -> CircuitBreaker:
        """Thresholds from ``RAGSERVE_BREAKER_*``."""
        return cls(
            provider,
            failures=settings.breaker_failures,
            open_s=settings.breaker_open_s,
            max_open_s=settings.breaker_max_open_s,
        )

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        if self._probing or self.remaining_s() == 0.0:
            return "half_open"
        return "open"

    def remaining_s(self) -> float:
        """Seconds until a probe may pass (0 when closed or the open period is over)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._open_for - self._clock())

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run one call under the breaker.

        Raises ``CircuitOpen`` instead of calling while the circuit is open, and also when the
        call's own transient failure leaves it open (the failure that trips the circuit, or a
        failed probe): that job is parked like the others rather than spending an attempt.
        """
        probe = self.admit()
        try:
            yield
        except CircuitOpen:
            raise
        except TransientProviderError as exc:
            self.failure(probe)
            if self._opened_at is not None:
                raise CircuitOpen(self.provider, self.remaining_s()) from exc
            raise
        except BaseException:
            # Cancelled, or a permanent error (a bad request): no verdict on the endpoint.
            if probe:
                self._probing = False
            raise
        else:
            self.success()

    def admit(self) -> bool:
        """Let a call through (True if it is the half-open probe), or raise ``CircuitOpen``.

        Past the open period exactly one caller becomes the probe; the others keep waiting
        until it reports (a probe takes at most the call's timeout).
        """
        if self._opened_at is None:
            return False
        remaining = self.remaining_s()
        if remaining == 0.0 and not self._probing:
            self._probing = True
            return True
        # While a probe runs, come back soon rather than after a whole open period.
        raise CircuitOpen(self.provider, remaining or min(1.0, self.open_s))

    def success(self) -> None:
        """The call worked: close the circuit and forget the failures."""
        self._consecutive = 0
        self._opened_at = None
        self._probing = False
        self._open_for = self.open_s

    def failure(self, probe: bool = False) -> None:
        """A transient failure; opens the circuit at the threshold or when the probe fails."""
        self._consecutive += 1
        if probe:
            self._probing = False
            self._open_for = min(self.max_open_s, self._open_for * 2.0)
            self._opened_at = self._clock()
            self.opened_total += 1
        elif self._opened_at is None and self._consecutive >= self.failures:
            self._open_for = self.open_s
            self._opened_at = self._clock()
            self.opened_total += 1

    def describe(self) -> dict[str, object]:
        """For ``/readyz`` details."""
        return {
            "state": self.state,
            "consecutive_failures": self._consecutive,
            "retry_in_s": round(self.remaining_s(), 3),
            "opened_total": self.opened_total,
        }


def breakers_of(*providers: object) -> list[CircuitBreaker]:
    """The breakers of these model clients (local models have none)."""
    found = (getattr(provider, "breaker", None) for provider in providers)
    return [breaker for breaker in found if isinstance(breaker, CircuitBreaker)]


def describe_circuits(breakers: Sequence[CircuitBreaker]) -> dict[str, dict[str, object]]:
    """``/readyz`` details: each circuit by provider. Informative only: a process whose
    circuit is open is alive and ready (it parks jobs until the endpoint is back)."""
    return {breaker.provider: breaker.describe() for breaker in breakers}
