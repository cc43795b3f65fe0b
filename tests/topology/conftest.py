"""The production topology on one machine: ``ragserve api`` replicas and workers behind real
nginx, on a standalone PostgreSQL (bench/cluster.py). Tests here are marked ``topology`` and
skipped when nginx is not installed (``apt-get install -y nginx``)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from cluster import Cluster, ClusterConfig  # noqa: E402

__all__ = ["Cluster", "ClusterConfig"]

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "topology: real nginx + api/worker processes + standalone PostgreSQL"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.topology)
            if NGINX is None:
                item.add_marker(
                    pytest.mark.skip(reason="nginx not installed (apt-get install -y nginx)")
                )


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start a cluster (logs under the test's tmp_path); stopped at the end of the test.
    ``RAGSERVE_DRAIN_S`` is short so that a test's teardown does not wait 30 s."""
    started: list[Cluster] = []

    def start(**options: Any) -> Cluster:
        env = {"RAGSERVE_DRAIN_S": "3", **options.pop("env", {})}
        workdir = tmp_path / f"cluster-{len(started)}"
        cluster = Cluster(ClusterConfig(env=env, workdir=workdir, **options))
        started.append(cluster)
        cluster.start()
        return cluster

    yield start
    for cluster in started:
        cluster.close()
