"""``ragserve worker --health-port``: ``/healthz`` and ``/readyz`` for orchestrators.

A real worker process for the ordinary cases (ready, draining); a worker in this process for
the wedged event loop, since blocking a child's loop from outside is not possible without
adding a back door to it. (The database-lost cases are in ``test_db_outage.py``.)
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from ragserve.jobs.health import HealthServer, WorkerHealth
from ragserve.kb.readiness import EmbedderCheck
from ragserve.services import build_worker, open_services
from support import free_port, service_env, settings_for
from support.workers import (
    ingest,
    logged,
    questions,
    started,
    submit,
    wait_for,
    wait_worker_ready,
)

if TYPE_CHECKING:
    from support import MockLLM, Proc


def test_worker_probes_ready_then_draining(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    spawn: Callable[..., Proc],
    start_service: Callable[..., tuple[str, Proc]],
) -> None:
    env = service_env(new_database_url(), llm_base_url=llm.base_url, drain_s=30)
    port = free_port()
    worker = spawn(
        [sys.executable, "-m", "ragserve", "worker", "--health-port", str(port)],
        env,
        name="worker",
    )
    url, api = start_service(env, command="api")
    procs = (api, worker)
    wait_worker_ready(worker)
    probe = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2)
    wait_for(lambda: probe.get("/readyz").status_code == 200, 30, "worker ready", procs)
    ready = probe.get("/readyz").json()
    assert ready["ready"] is True
    assert ready["checks"] == {
        "database": True,
        "schema_current": True,
        "models": True,
        "consuming": True,
        "draining": False,
        "fresh": True,
    }
    live = probe.get("/healthz")
    assert live.status_code == 200 and live.json()["status"] == "ok", live.text
    assert probe.get("/nope").status_code == 404

    with httpx.Client(base_url=url, timeout=10) as client:
        ingest(client, "kb", procs)
        llm.configure(ttft=6.0, tps=200)
        job_ids = submit(client, "kb", questions("probe", 1))
        wait_for(lambda: started(worker, set(job_ids)), 20, "the job to start", procs)
    # The worker's own job metrics, on the same port: the ingest it ran, the answer it waits on.
    metrics = probe.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain"), metrics.headers
    assert 'ragserve_job_attempts_total{kind="ingest",outcome="succeeded"' in metrics.text
    assert 'ragserve_job_queue_wait_seconds_count{kind="answer"' in metrics.text

    worker.signal(signal.SIGTERM)
    signalled = time.monotonic()
    # Not ready (draining) while the job finishes; alive all along.
    draining = wait_for(
        lambda: (r := probe.get("/readyz")).status_code == 503 and r.json(), 5, "503", procs
    )
    assert time.monotonic() - signalled < 3.0
    assert draining["checks"]["draining"] is True, draining
    assert probe.get("/healthz").status_code == 200
    assert worker.wait(30) == 0, worker.log()[-3000:]
    assert logged(worker, "job.succeeded")
    probe.close()


async def test_wedged_event_loop_reports_unhealthy(new_database_url: Callable[[], str]) -> None:
    settings = settings_for(new_database_url(), health_loop_stall_s=1.0)
    async with open_services(settings) as services:
        worker = build_worker(services)
        running = asyncio.create_task(worker.run())
        health = WorkerHealth(worker, services.db, EmbedderCheck(services.embedder), settings)
        server = HealthServer(health, "127.0.0.1", 0)
        server.start()
        watch = asyncio.create_task(health.watch())
        base = f"http://127.0.0.1:{server.port}"
        try:

            async def status(path: str) -> int:
                return (await asyncio.to_thread(httpx.get, base + path, timeout=2)).status_code

            deadline = time.monotonic() + 30
            while await status("/readyz") != 200:
                assert time.monotonic() < deadline, "worker never ready"
                await asyncio.sleep(0.2)
            assert await status("/healthz") == 200

            # Block the loop (as a blocking call in a job would); probe from another thread.
            seen: dict[str, Any] = {}

            def probe_while_blocked() -> None:
                time.sleep(2.0)
                for path in ("/healthz", "/readyz"):
                    response = httpx.get(base + path, timeout=2)
                    seen[path] = (response.status_code, response.json())

            prober = threading.Thread(target=probe_while_blocked)
            prober.start()
            time.sleep(3.0)  # the wedge: nothing else runs in this loop meanwhile
            prober.join(5)
            assert seen["/healthz"][0] == 503, seen
            assert seen["/healthz"][1]["loop_stalled_s"] >= 1.0, seen
            assert seen["/readyz"][0] == 503, seen
            assert seen["/readyz"][1]["checks"]["fresh"] is False, seen

            await asyncio.sleep(1.0)  # the loop runs again: healthy again
            assert await status("/healthz") == 200
        finally:
            watch.cancel()
            worker.drain()
            await running
            server.stop()
