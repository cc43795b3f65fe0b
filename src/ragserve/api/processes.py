"""Several API processes on one address: ``ragserve api --workers N`` (``RAGSERVE_API_WORKERS``).

One Python process serves HTTP on one core at most (its event loop), and on this kind of
machine a submission costs more CPU in the API (uvicorn, FastAPI, psycopg) than in PostgreSQL;
N processes use N cores. Each child is a whole ``ragserve api``: its own event loop, database
pool, caches and rate-limit buckets (per process, as with N replicas). They listen on the same
address with ``SO_REUSEPORT``, so the kernel spreads new connections over them; no process
accepts for the others.

The parent only supervises. It starts (or joins) the embedded PostgreSQL once and hands its
URL to the children. SIGTERM or SIGINT to the parent is forwarded once to every child as
SIGTERM, and each drains exactly as a single ``ragserve api`` does (``/readyz`` 503, requests
in flight finish, event streams end after ``RAGSERVE_SSE_DRAIN_S``); the parent exits 0 once
they all have. The children run in their own process group, so a Ctrl-C in a terminal reaches
them through the parent only (once, not twice, which uvicorn would take as "force exit"). A
child that dies on its own stops the others, and the parent exits 1: the orchestrator restarts
the whole unit, as it would a single process.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
from multiprocessing.process import BaseProcess
from types import FrameType

from pydantic import SecretStr

from ragserve.db.embedded import start_embedded_server
from ragserve.logs import configure_logging
from ragserve.settings import Settings

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's default


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_child(settings: Settings, host: str, port: int) -> None:
    """One API process (the target of each child): listen, serve, drain on SIGTERM."""
    os.setpgid(0, 0)  # see the module docstring: signals come from the parent only
    configure_logging()
    from ragserve.api.serving import create_server  # after the fork/spawn: not in the parent

    sock = reuse_port_socket(host, port)
    sock.listen(BACKLOG)
    server = create_server(settings, host=host, port=port, run_worker=False)
    loop_factory = _loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(server.serve(sockets=[sock]))
    if server.started is False and not server.should_exit:
        sys.exit(1)


def _loop_factory() -> type[asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.Loop


def serve_api_processes(settings: Settings, *, host: str, port: int, workers: int) -> int:
    """Run ``workers`` API processes on ``host:port`` until SIGTERM/SIGINT; the exit status."""
    if settings.database_url is None:  # one embedded server, joined by URL by every child
        url = start_embedded_server(settings.data_dir)
        settings = settings.model_copy(update={"database_url": SecretStr(url)})
    # Holding the address (bound, never listening: it takes no connections) resolves port 0
    # once for every child, and fails here, once, if the address is taken.
    reserved = reuse_port_socket(host, port)
    port = reserved.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    children: list[BaseProcess] = [
        context.Process(target=_serve_child, args=(settings, host, port), name=f"api-{n}")
        for n in range(workers)
    ]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        log.info("api processes draining", extra={"event": "api.draining", "workers": workers})
        for child in children:
            if child.pid is not None and child.exitcode is None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    log.info(
        "api processes started",
        extra={"event": "api.started", "workers": workers, "host": host, "port": port},
    )
    failed = False
    try:
        while any(child.exitcode is None for child in children):
            for child in children:
                child.join(0.2)
                if child.exitcode is not None and not stopping:
                    # One died on its own: stop the rest, and say so with the exit status.
                    failed = True
                    stop(signal.SIGTERM, None)
    finally:
        reserved.close()
    statuses = [child.exitcode for child in children]
    return 1 if failed or any(status not in (0, None) for status in statuses) else 0
