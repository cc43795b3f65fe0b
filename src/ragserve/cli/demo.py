"""``ragserve demo``: the whole path, through the HTTP API of a service started in-process.

The service runs in a background thread (its own event loop: API + worker + embedded
PostgreSQL); this thread is an ordinary HTTP client, exactly like ``ragserve ask``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from ragserve.cli.answer import stream_answer
from ragserve.cli.render import print_job, print_sources
from ragserve.client import ApiClient
from ragserve.errors import RagserveError
from ragserve.server import build_server
from ragserve.settings import Settings


def sample_dir() -> Path:
    return Path(str(resources.files("ragserve").joinpath("samples")))


@dataclass(frozen=True)
class SampleQuestion:
    """A question about the bundled samples, and a fact its answer should contain."""

    question: str
    expected: str


def sample_questions() -> list[SampleQuestion]:
    items = json.loads((sample_dir() / "questions.json").read_text(encoding="utf-8"))
    return [SampleQuestion(str(item["question"]), str(item["expected"])) for item in items]


def sample_files() -> list[Path]:
    return sorted(p for p in sample_dir().iterdir() if p.name != "questions.json")


@contextmanager
def background_service(settings: Settings, start_timeout_s: float = 180) -> Iterator[str]:
    """Run ``ragserve serve`` on a free loopback port in a thread; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    server = build_server(settings, host=host, port=port, run_worker=True)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="ragserve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RagserveError("the in-process service did not start; see the log above")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=settings.drain_s + 30)
        sock.close()


def wait_for(client: ApiClient, job_id: str) -> dict[str, Any]:
    """Follow the job's events to its end, then read it."""
    for _ in client.stream_events(job_id):
        pass
    return client.get_job(job_id)


def run_demo(settings: Settings, collection: str, console: Console) -> bool:
    console.print(Rule("ragserve demo"))
    console.print(f"data folder: {settings.data_dir.resolve()}  (starting the service ...)")
    with background_service(settings) as url, ApiClient(url, timeout=120) as client:
        console.print(f"service listening at {url}")
        files = sample_files()
        accepted = client.upload_files(collection, files)
        console.print(f"ingest job {accepted['job_id']}: {len(files)} sample documents")
        ingest = wait_for(client, accepted["job_id"])
        print_job(ingest, console)
        if ingest["status"] != "succeeded":
            return False
        found = 0
        questions = sample_questions()
        for item in questions:
            console.print(Rule(item.question))
            accepted = client.submit(item.question, collection)
            job = stream_answer(client, accepted["job_id"], console)
            print_sources(job, console)
            answer = (job.get("result") or {}).get("answer", "")
            found += item.expected.lower() in answer.lower()
        console.print(Rule())
        console.print(
            f"{found}/{len(questions)} answers contain the expected fact."
            f' Try: ragserve serve, then ragserve ask "..." --collection {collection}'
        )
        return True
