"""Prometheus metrics of one API process, on a registry of its own (no global state).

Three sources, rendered together by ``GET /metrics``:

- this process's HTTP requests (``ragserve_http_request_duration_seconds``), observed by
  ``HttpMetricsMiddleware``;
- facts that live in the database (queue depth and age, live workers, jobs by status), read
  at scrape time, so that every replica reports the same whichever one is scraped;
- the in-process worker's attempt metrics, when ``ragserve serve`` runs one
  (``ragserve.jobs.metrics.JobMetrics``; a bare worker serves those on its health port).

Labels are bounded: ``route`` is the route template (``/v1/jobs/{job_id}``), never the raw
path, and ``unmatched`` for any path no route matched; ``method`` is one of the HTTP methods
or ``other``; queues and versions are few.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragserve.jobs.metrics import JobMetrics
from ragserve.jobs.monitoring import DatabaseFacts

UNMATCHED_ROUTE: Final = "unmatched"
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class DatabaseFactsCollector(Collector):
    """Renders the last ``DatabaseFacts`` read; nothing when the last read failed."""

    def __init__(self) -> None:
        self.facts: DatabaseFacts | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        facts = self.facts
        if facts is None:
            return
        depth = GaugeMetricFamily(
            "ragserve_queue_depth", "Queue entries waiting to run.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "ragserve_queue_oldest_seconds",
            "Age of the oldest entry that is due and waiting (0: none).",
            labels=["queue"],
        )
        running = GaugeMetricFamily(
            "ragserve_queue_running", "Queue entries held by a worker now.", labels=["queue"]
        )
        for queue, q in sorted(facts.queues.items()):
            depth.add_metric([queue], q.depth)
            oldest.add_metric([queue], q.oldest_s)
            running.add_metric([queue], q.running)
        expected_wait = GaugeMetricFamily(
            "ragserve_queue_expected_wait_seconds",
            "Estimated wait of a job submitted now (as estimated_start_s); absent while unknown.",
            labels=["queue"],
        )
        for queue, wait_s in sorted(facts.expected_wait_s.items()):
            expected_wait.add_metric([queue], wait_s)
        workers = GaugeMetricFamily(
            "ragserve_workers", "Live worker processes (presence refreshed in the database)."
        )
        workers.add_metric([], facts.workers)
        by_version = GaugeMetricFamily(
            "ragserve_worker_versions", "Live worker processes by version.", labels=["version"]
        )
        for version, count in sorted(facts.workers_by_version.items()):
            by_version.add_metric([version], count)
        yield from (depth, oldest, running, expected_wait, workers, by_version)


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
        self.http_duration = Histogram(
            "ragserve_http_request_duration_seconds",
            "Time until the response starts (for event streams: until the stream opens).",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.database = DatabaseFactsCollector()
        self.registry.register(self.database)

    def set_database_facts(
        self, facts: DatabaseFacts | None, jobs_by_status: dict[str, int] | None
    ) -> None:
        """What the database said at this scrape; None (it did not answer) drops the series
        rather than repeating stale values."""
        self.database.facts = facts
        self.jobs.clear()
        for status, count in (jobs_by_status or {}).items():
            self.jobs.labels(status).set(count)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.http_duration.labels(route, method, str(status)).observe(seconds)

    def render(self, worker: JobMetrics | None = None) -> bytes:
        text = generate_latest(self.registry)
        return text + worker.render() if worker is not None else text


def route_of(scope: Scope) -> str:
    """The template of the route that served the request (set by the router), or a fixed label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Pure ASGI (not ``BaseHTTPMiddleware``, which would buffer event streams): observes the
    time until the response starts, by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            if not observed:
                observed = True
                seconds = time.perf_counter() - started
                self.metrics.observe_request(route_of(scope), scope["method"], status, seconds)

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except BaseException:
            observe(500)  # the server's error handler answers 500 outside this middleware
            raise
