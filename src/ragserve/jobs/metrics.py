"""What a worker process observes about the attempts it runs, as Prometheus metrics.

These are facts only the running process sees (how long an attempt took, when the first token
came), so they are kept in memory, on a registry of the worker's own, and served by whatever
HTTP server the process has: the API's ``/metrics`` for ``ragserve serve``, the health port
for ``ragserve worker --health-port``. ``render()`` is thread-safe (prometheus_client locks).

Every series carries the worker's ``version``: versions are few (a stable and a canary), so
the label stays bounded, and an operator compares success rate, duration and first-token time
of the two before promoting or rolling back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ragserve.kb.breaker import STATE_VALUES, CircuitBreaker

Outcome = Literal["succeeded", "failed", "retried", "handed_back", "parked", "cancelled", "lost"]
"""How an attempt ended: the job succeeded; failed for good (dead letter); will be retried;
was handed back by a draining worker; was parked while a model endpoint's circuit is open
(attempt refunded); was cancelled; or was lost (another attempt took the job over, or it
changed under the attempt)."""

QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)


class JobMetrics:
    """The worker-side metric families, labelled with this worker's ``version``."""

    def __init__(self, version: str, breakers: Sequence[CircuitBreaker] = ()) -> None:
        self.version = version
        self.registry = CollectorRegistry()
        if breakers:
            self.registry.register(CircuitCollector(breakers))
        self.queue_wait = Histogram(
            "ragserve_job_queue_wait_seconds",
            "From a job's (re)queueing, or its retry becoming due, to the start of its attempt.",
            ["kind", "version"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "ragserve_job_duration_seconds",
            "Duration of one attempt, by how it ended (status = the attempt's outcome).",
            ["kind", "status", "version"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "ragserve_llm_first_token_seconds",
            "From the retrieved sources (the model's request) to the first answer token.",
            ["version"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.attempts = Counter(
            "ragserve_job_attempts_total",
            "Attempts that ended, by outcome.",
            ["kind", "outcome", "version"],
            registry=self.registry,
        )

    def started(self, kind: str, waited_s: float | None) -> None:
        """An attempt began; ``waited_s`` is None for a takeover (not queue wait)."""
        if waited_s is not None:
            self.queue_wait.labels(kind, self.version).observe(waited_s)

    def finished(
        self, kind: str, outcome: Outcome, duration_s: float, first_token_s: float | None = None
    ) -> None:
        self.duration.labels(kind, outcome, self.version).observe(duration_s)
        self.attempts.labels(kind, outcome, self.version).inc()
        if first_token_s is not None:
            self.first_token.labels(self.version).observe(first_token_s)

    def render(self) -> bytes:
        """The families in Prometheus' text format."""
        return generate_latest(self.registry)


class CircuitCollector(Collector):
    """The circuits' state, read at scrape time (the breakers count their own openings)."""

    def __init__(self, breakers: Sequence[CircuitBreaker]) -> None:
        self.breakers = list(breakers)

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "ragserve_circuit_state",
            "Circuit of a model endpoint: 0 closed, 1 half-open, 2 open.",
            labels=["provider"],
        )
        opened = CounterMetricFamily(
            "ragserve_circuit_opened",
            "Times the circuit of a model endpoint opened.",
            labels=["provider"],
        )
        for breaker in self.breakers:
            state.add_metric([breaker.provider], STATE_VALUES[breaker.state])
            opened.add_metric([breaker.provider], breaker.opened_total)
        yield state
        yield opened
