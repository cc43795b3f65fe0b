"""Prometheus metrics of one API process, on a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submitted = Counter(
            "ragserve_jobs_submitted_total",
            "Jobs submitted, by kind and outcome (created, cached, coalesced, replayed).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "ragserve_jobs",
            "Jobs in the database, by status.",
            ["status"],
            registry=self.registry,
        )
        self.worker_running = Gauge(
            "ragserve_worker_running_jobs",
            "Jobs this process's worker is running now.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
