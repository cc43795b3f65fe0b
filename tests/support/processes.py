"""Child processes for tests: started with their output in a file, stopped gently."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""


class Proc:
    """A child process with its output in a file (read it when a test fails)."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.popen = subprocess.Popen(
            args, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; closes the log."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, unbuffered output, plus ``extra``."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for programs that cannot announce their own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, proc: Proc, timeout: float = 90) -> None:
    """Poll ``url`` until it answers 200; fail with the process's log if it exits or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{url} exited early:\n{proc.log()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready in {timeout}s:\n{proc.log()[-3000:]}")


def ragserve_command(*args: str) -> list[str]:
    """The argv of ``ragserve ARGS...`` run by this interpreter."""
    return [sys.executable, "-m", "ragserve", *args]


@contextmanager
def running_service(
    env: Mapping[str, str], log_dir: Path, command: str = "serve"
) -> Iterator[tuple[str, Proc]]:
    """``ragserve COMMAND`` on a free port, ready; stopped on exit, and its log must then hold
    no traceback (a 500 or a crash that the test's own assertions did not see)."""
    port = free_port()
    proc = Proc(
        ragserve_command(command, "--port", str(port)),
        child_env(env),
        log_dir / f"{command}.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", proc)
        yield url, proc
    finally:
        proc.stop()
    log = proc.log()
    assert "Traceback" not in log and "InternalError" not in log, log[-3000:]
