"""The OpenAI-protocol mock LLM for tests: ``bench/mock_llm.py`` (the benchmarks' one program)
started in a subprocess, and a small client for its admin endpoints."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx

from support.processes import ROOT, Proc, child_env, wait_http

MOCK_LLM = ROOT / "bench" / "mock_llm.py"
_ANNOUNCEMENT = "mock LLM listening on "


class MockLLM:
    """Client of a running mock: its URLs and its ``/admin`` endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base_url = f"{url}/v1"
        """What ``RAGSERVE_LLM_BASE_URL`` points at."""

    def configure(self, **changes: Any) -> None:
        """Change behaviour at run time (``ttft``, ``tps``, ``error_rate``, ...)."""
        httpx.post(f"{self.url}/admin/config", json=changes, timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/admin/stats", timeout=5)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def reset_stats(self) -> None:
        httpx.post(f"{self.url}/admin/reset-stats", timeout=5).raise_for_status()


def start_mock_llm(log: Path, *options: str, timeout: float = 30) -> tuple[Proc, MockLLM]:
    """Start the mock on a port it picks itself (``--port 0``) and wait until it serves.

    ``options`` are its command-line options (``--ttft 0.05``, ``--seed 7`` ...). The caller
    stops the returned process.
    """
    proc = Proc(
        [sys.executable, str(MOCK_LLM), "--host", "127.0.0.1", "--port", "0", *options],
        child_env(),
        log,
    )
    deadline = time.monotonic() + timeout
    while _ANNOUNCEMENT not in proc.log():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            raise AssertionError(f"mock LLM did not start:\n{proc.log()[-3000:]}")
        time.sleep(0.05)
    line = next(line for line in proc.log().splitlines() if _ANNOUNCEMENT in line)
    mock = MockLLM(line.split(_ANNOUNCEMENT, 1)[1].strip().removesuffix("/v1"))
    wait_http(f"{mock.base_url}/models", proc, timeout)
    return proc, mock
