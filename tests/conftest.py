"""Shared fixtures: a real embedded PostgreSQL, fresh databases, real servers in subprocesses.

One embedded server for the session; every test module that needs isolation gets a database
of its own on it (``CREATE DATABASE`` + migrations, well under a second).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ragserve.db.embedded import start_embedded_server
from ragserve.db.pool import Database
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.ingest import Ingestor
from ragserve.kb.store import KnowledgeStore
from ragserve.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "squad-dev"
_db_numbers = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_database(url: str, name: str) -> str:
    """The same server URL, pointing at database ``name``."""
    head, _, tail = url.partition("/postgres?")
    return f"{head}/{name}?{tail}" if tail else url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def pg_data_dir() -> Iterator[Path]:
    # Not under pytest's 0700 temp root: as root, the server runs as user ``pgserver``,
    # which must be able to reach the folder until the very end of the session.
    path = Path(tempfile.mkdtemp(prefix="ragserve-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_data_dir: Path) -> str:
    """URL of the session's embedded server (database ``postgres``)."""
    return start_embedded_server(pg_data_dir)


@pytest.fixture(scope="session")
def new_database_url(pg_url: str) -> Callable[[], str]:
    """Create an empty database and return its URL."""

    def create() -> str:
        name = f"t{os.getpid()}_{next(_db_numbers)}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return with_database(pg_url, name)

    return create


@pytest.fixture
async def db(new_database_url: Callable[[], str]) -> AsyncIterator[Database]:
    """A migrated database of the test's own, with an open pool."""
    database = Database(new_database_url(), max_size=5)
    await database.open()
    yield database
    await database.close()


@pytest.fixture(scope="session")
async def embedder() -> AsyncIterator[LocalEmbedder]:
    model = LocalEmbedder()
    await model.load()
    yield model
    await model.aclose()


@pytest.fixture
def kb(db: Database) -> KnowledgeStore:
    return KnowledgeStore(db)


@pytest.fixture
def ingestor(kb: KnowledgeStore, embedder: LocalEmbedder) -> Ingestor:
    return Ingestor(kb, embedder, Chunker(800, 100))


# -- processes ---------------------------------------------------------------------------


class Proc:
    """A child process with its output in a file (read it when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.popen = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def wait_http(url: str, proc: Proc, timeout: float = 90) -> None:
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


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start child processes; all are stopped at the end of the test."""
    started: list[Proc] = []

    def start(args: list[str], env: dict[str, str] | None = None, name: str = "proc") -> Proc:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = Proc(args, full_env, tmp_path / f"{name}-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def mock_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLM]:
    """The bench's OpenAI-compatible mock server, in its own process, for the session."""
    port = free_port()
    log = tmp_path_factory.mktemp("mock-llm") / "mock.log"
    proc = Proc(
        [
            sys.executable,
            str(ROOT / "bench" / "mock_llm.py"),
            "--port",
            str(port),
            "--ttft",
            "0.05",
            "--tps",
            "200",
            "--max-concurrency",
            "256",
        ],
        {**os.environ, "PYTHONUNBUFFERED": "1"},
        log,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/models", proc)
    yield MockLLM(url)
    proc.stop()


class MockLLM:
    def __init__(self, url: str) -> None:
        self.url = url
        self.base_url = f"{url}/v1"

    def configure(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/admin/config", json=changes, timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/admin/stats", timeout=5).json()


def service_env(database_url: str, **settings: Any) -> dict[str, str]:
    env = {"RAGSERVE_DATABASE_URL": database_url, "RAGSERVE_DRAIN_S": "3"}
    env.update({f"RAGSERVE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture
def start_service(
    spawn: Callable[..., Proc],
) -> Callable[..., tuple[str, Proc]]:
    """``ragserve serve`` (or ``api``) on a free port; returns its URL once ready."""

    def start(env: dict[str, str], command: str = "serve") -> tuple[str, Proc]:
        port = free_port()
        proc = spawn(
            [sys.executable, "-m", "ragserve", command, "--port", str(port)], env, name=command
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", proc)
        return url, proc

    return start


@pytest.fixture
def start_worker(spawn: Callable[..., Proc]) -> Callable[..., Proc]:
    def start(env: dict[str, str]) -> Proc:
        return spawn([sys.executable, "-m", "ragserve", "worker"], env, name="worker")

    return start


def settings_for(database_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=database_url, **overrides)
