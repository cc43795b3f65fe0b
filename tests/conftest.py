"""Shared fixtures: a real embedded PostgreSQL, fresh databases, real servers in subprocesses.

One embedded server for the session; every test module that needs isolation gets a database
of its own on it (``CREATE DATABASE`` + migrations, well under a second).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from ragserve.db.embedded import start_embedded_server
from ragserve.db.pool import Database
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.ingest import Ingestor
from ragserve.kb.store import KnowledgeStore
from support import (
    MockLLM,
    Proc,
    child_env,
    free_port,
    ragserve_command,
    start_mock_llm,
    wait_http,
    with_database,
)

_db_numbers = itertools.count()


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


# -- processes (helpers in tests/support) -----------------------------------------------


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start child processes; all are stopped at the end of the test."""
    started: list[Proc] = []

    def start(args: list[str], env: dict[str, str] | None = None, name: str = "proc") -> Proc:
        proc = Proc(args, child_env(env), tmp_path / f"{name}-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def mock_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLM]:
    """The bench's OpenAI-compatible mock server, in its own process, for the session."""
    log = tmp_path_factory.mktemp("mock-llm") / "mock.log"
    proc, mock = start_mock_llm(log, "--ttft", "0.05", "--tps", "200", "--max-concurrency", "256")
    yield mock
    proc.stop()


@pytest.fixture
def llm(mock_llm: MockLLM) -> Iterator[MockLLM]:
    """The session's mock LLM, put back to the session defaults after the test."""
    yield mock_llm
    mock_llm.configure(ttft=0.05, tps=200, error_rate=0.0)


@pytest.fixture
def start_service(spawn: Callable[..., Proc]) -> Callable[..., tuple[str, Proc]]:
    """``ragserve serve`` (or ``api``) on a free port; returns its URL once ready."""

    def start(env: dict[str, str], command: str = "serve") -> tuple[str, Proc]:
        port = free_port()
        proc = spawn(ragserve_command(command, "--port", str(port)), env, name=command)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", proc)
        return url, proc

    return start


@pytest.fixture
def start_worker(spawn: Callable[..., Proc]) -> Callable[..., Proc]:
    def start(env: dict[str, str]) -> Proc:
        return spawn(ragserve_command("worker"), env, name="worker")

    return start
