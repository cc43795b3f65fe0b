"""``ragserve api --workers N`` (``RAGSERVE_API_WORKERS``): N processes on one port, one drain."""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
import psutil

from support import Proc, service_env


def test_api_processes_share_the_port_and_drain_together_on_sigterm(
    start_service: Callable[..., tuple[str, Proc]], new_database_url: Callable[[], str]
) -> None:
    url, proc = start_service(service_env(new_database_url(), api_workers=2), command="api")
    children = [  # multiprocessing's resource tracker is a child too
        child
        for child in psutil.Process(proc.popen.pid).children()
        if "resource_tracker" not in " ".join(child.cmdline())
    ]
    assert len(children) == 2
    clients = [httpx.Client(base_url=url, timeout=10) for _ in range(16)]
    try:
        for n, client in enumerate(clients):  # one kept-alive connection each
            response = client.post("/v1/jobs", json={"query": f"question {n}"})
            assert response.status_code == 202, response.text
        # The kernel spread the connections: both processes hold some (all 16 on one of
        # them: 1 chance in 2**15).
        port = httpx.URL(url).port
        holding = [
            sum(
                c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
                for c in child.net_connections("tcp")
            )
            for child in children
        ]
        assert all(n > 0 for n in holding), holding
    finally:
        for client in clients:
            client.close()
    proc.signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.log()
    assert not any(child.is_running() and child.status() != "zombie" for child in children)
