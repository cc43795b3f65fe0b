"""The monitoring in deploy/ against real Prometheus (Debian's ``prometheus`` package).

- The alert rules and the example configuration pass ``promtool``, and the rules' unit tests
  (``alerts_test.yml``) fire exactly where they should.
- A real Prometheus server scrapes two running ``ragserve api`` replicas (no worker, so the
  submitted jobs stay queued), and PromQL over its HTTP API returns the queue depth from each
  replica; the alert rules load, and every query of the Grafana dashboard evaluates.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support import ROOT, Proc, free_port, service_env, wait_http

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "ragserve.json"
QUEUED = 4

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian: apt-get install -y prometheus)",
)
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus not installed (Debian: apt-get install -y prometheus)",
)


def promtool(*args: str) -> str:
    done = subprocess.run(
        ["promtool", *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@needs_promtool
def test_alert_rules_and_config_pass_promtool() -> None:
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
    promtool("check", "config", "prometheus.yml")


def keda_wait_query() -> str:
    """The PromQL of the ScaledObject's expected-wait trigger."""
    documents = yaml.safe_load_all((DEPLOY / "k8s" / "keda-scaledobject.yaml").read_text())
    (scaled,) = [d for d in documents if d["kind"] == "ScaledObject"]
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    query: str = trigger["metadata"]["query"]
    return query


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_covers_the_metric_families() -> None:
    queries = " ".join(dashboard_queries())
    for family in (
        "ragserve_queue_depth",
        "ragserve_queue_oldest_seconds",
        "ragserve_job_queue_wait_seconds_bucket",
        "ragserve_job_duration_seconds_bucket",
        "ragserve_llm_first_token_seconds_bucket",
        "ragserve_job_attempts_total",
        "ragserve_workers",
        "ragserve_http_request_duration_seconds_bucket",
    ):
        assert family in queries, family


# --------------------------------------------------------------------------- a real scrape


class Prometheus:
    def __init__(self, url: str, proc: Proc) -> None:
        self.url = url
        self.proc = proc

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (promql, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture
def prometheus_for(
    spawn: Callable[..., Proc], tmp_path: Path
) -> Iterator[Callable[[list[str]], Prometheus]]:
    """A Prometheus server scraping ``targets`` every second, with ragserve's alert rules."""

    def start(targets: list[str]) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "ragserve-api",
                            "scrape_interval": "1s",
                            "static_configs": [{"targets": targets}],
                        }
                    ],
                }
            )
        )
        port = free_port()
        proc = spawn(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            name="prometheus",
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", proc, timeout=60)
        return Prometheus(url, proc)

    yield start


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.5)


@needs_prometheus
def test_prometheus_scrapes_the_queue_depth_from_every_replica(
    new_database_url: Callable[[], str],
    start_service: Callable[..., tuple[str, Proc]],
    prometheus_for: Callable[[list[str]], Prometheus],
) -> None:
    env = service_env(new_database_url())
    first, _ = start_service(env, "api")
    second, _ = start_service(env, "api")
    for i in range(QUEUED):  # submitted to one replica; no worker runs, so they stay queued
        response = httpx.post(
            f"{first}/v1/jobs", json={"query": f"question {i} {uuid.uuid4()}?"}, timeout=30
        )
        assert response.status_code == 202, response.text
    targets = [url.removeprefix("http://") for url in (first, second)]

    prometheus = prometheus_for(targets)

    def depth_by_instance() -> dict[str, float]:
        rows = prometheus.query('ragserve_queue_depth{queue="answer"}')
        return {row["metric"]["instance"]: float(row["value"][1]) for row in rows}

    wait_for(lambda: len(depth_by_instance()) == 2, "both replicas scraped")
    # The depth lives in the database: whichever replica is scraped reports all of it.
    assert depth_by_instance() == {target: QUEUED for target in targets}
    assert float(prometheus.query("max(ragserve_queue_depth)")[0]["value"][1]) == QUEUED
    assert float(prometheus.query("max(ragserve_workers)")[0]["value"][1]) == 0
    oldest = prometheus.query('max(ragserve_queue_oldest_seconds{queue="answer"})')
    assert float(oldest[0]["value"][1]) > 0

    # The HTTP histogram is labelled by route template, not by raw path (a scrape observes
    # itself once its response has started, so /metrics shows from the second scrape on).
    def routes() -> set[str]:
        rows = prometheus.query("ragserve_http_request_duration_seconds_count")
        return {row["metric"]["route"] for row in rows}

    wait_for(lambda: {"/v1/jobs", "/metrics"} <= routes(), "routes of the requests made")

    # The alert rules loaded and evaluate without errors.
    rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = [rule for group in rules for rule in group["rules"]]
    assert len(loaded) == 6
    wait_for(
        lambda: all(
            rule.get("health") == "ok"
            for group in httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"][
                "groups"
            ]
            for rule in group["rules"]
        ),
        "every rule evaluated",
        timeout=30,
    )
    # The KEDA trigger's query is valid PromQL (its series appears once jobs have finished:
    # tests/limits checks the value on /metrics).
    prometheus.query(keda_wait_query())
    # Every query of the dashboard is valid PromQL (Grafana's $__rate_interval set by hand).
    for expr in dashboard_queries():
        prometheus.query(expr.replace("$__rate_interval", "1m"))
