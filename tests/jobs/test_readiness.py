"""``/readyz`` reports the embedding model as it is, not as it is hoped to be."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from ragserve.api.readiness import EmbedderCheck
from ragserve.kb.embeddings import LocalEmbedder, OpenAIEmbedder
from support import Proc, free_port, service_env


async def test_local_model_is_ready_only_while_loaded() -> None:
    embedder = LocalEmbedder()
    check = EmbedderCheck(embedder)
    try:
        assert await check.ready() is False  # not loaded yet: not ready ...
        assert embedder.loaded is False  # ... and the probe did not load it either
        await embedder.load()
        assert await check.ready() is True  # loaded, and it embedded the probe text
        assert await check.ready() is True  # remembered
    finally:
        await embedder.aclose()
    assert await check.ready() is False  # released: not ready any more


async def test_a_failed_probe_is_remembered_for_retry_s() -> None:
    """An endpoint that accepts connections and never answers: each probe costs a timeout,
    so only the first ready() may wait; the next ones answer from memory until retry_s."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accept()ed, never answers
        port = silent.getsockname()[1]
        embedder = OpenAIEmbedder(f"http://127.0.0.1:{port}/v1", "any", timeout_s=30)
        check = EmbedderCheck(embedder, timeout_s=0.5, retry_s=60)
        try:
            started = time.monotonic()
            assert await check.ready() is False
            assert time.monotonic() - started >= 0.5  # it really asked, and timed out
            started = time.monotonic()
            assert await check.ready() is False
            assert time.monotonic() - started < 0.25  # remembered: no second request
        finally:
            await embedder.aclose()


def wait_answer(url: str, proc: Proc, timeout: float = 90) -> httpx.Response:
    """The first answer of ``url``, whatever its status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.popen.poll() is None, proc.log()[-3000:]
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered:\n{proc.log()[-3000:]}")


def test_readyz_is_503_while_the_embedder_cannot_embed(
    new_database_url: Callable[[], str], spawn: Callable[..., Proc]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    env = service_env(new_database_url(), embeddings="openai", embeddings_base_url=dead)
    port = free_port()
    proc = spawn([sys.executable, "-m", "ragserve", "api", "--port", str(port)], env, name="api")
    ready = wait_answer(f"http://127.0.0.1:{port}/readyz", proc)
    body: dict[str, Any] = ready.json()
    assert ready.status_code == 503, body
    assert body["ready"] is False and body["checks"]["models"] is False
    assert body["checks"]["database"] is True and body["checks"]["schema"] is True
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200  # alive, not ready
