"""deploy/docker-compose.yml describes the topology that bench/cluster.py runs in the tests:
the same processes and commands, and nginx with the same configuration file."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
sys.path.insert(0, str(ROOT / "bench"))

import cluster  # noqa: E402


def services() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    found: dict[str, Any] = compose["services"]
    return found


def test_processes_are_the_clusters() -> None:
    svc = services()
    assert {"postgres", "api", "worker", "nginx"} <= set(svc)
    # The cluster starts `python -m ragserve api --port P` and `python -m ragserve worker`.
    assert svc["api"]["command"][:2] == ["ragserve", "api"]
    assert svc["api"]["command"][svc["api"]["command"].index("--port") + 1] == "8000"
    assert svc["worker"]["command"] == ["ragserve", "worker"]
    defaults = cluster.ClusterConfig()
    assert svc["api"]["deploy"]["replicas"] == defaults.apis
    assert svc["worker"]["deploy"]["replicas"] == defaults.workers
    # Clients reach the API through nginx only.
    assert "ports" not in svc["api"]
    assert svc["nginx"]["ports"] == ["127.0.0.1:8000:8000"]
    # Same PostgreSQL major version as the tests' standalone server.
    assert svc["postgres"]["image"].endswith(f":pg{cluster.PG_MAJOR}")


def test_nginx_uses_the_clusters_configuration() -> None:
    nginx = services()["nginx"]
    (volume,) = nginx["volumes"]
    source, target, *_ = volume.split(":")
    assert (COMPOSE.parent / source).resolve() == cluster.NGINX_TEMPLATE
    assert target == f"/etc/nginx/templates/{cluster.NGINX_TEMPLATE.name}"
    env = nginx["environment"]
    # Every variable of the template is set, and nothing else is substituted.
    variables = set(re.findall(r"\$\{(\w+)\}", cluster.NGINX_TEMPLATE.read_text()))
    assert variables == {k for k in env if k.startswith("RAGSERVE_")}
    assert re.match(env["NGINX_ENVSUBST_FILTER"], "RAGSERVE_API_SERVERS")
    assert not re.match(env["NGINX_ENVSUBST_FILTER"], "HOSTNAME")
    # The replicas' passive health check is the cluster's.
    expected = cluster.render_nginx_site("8000", ["api:8000"])
    rendered = re.sub(
        r"\$\{(\w+)\}", lambda m: str(env[m.group(1)]), cluster.NGINX_TEMPLATE.read_text()
    )
    assert rendered == expected
