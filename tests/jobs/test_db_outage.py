"""PostgreSQL unreachable for a few seconds under load: ``503`` + ``Retry-After`` meanwhile
(never ``500``, never a hang), every process reconnects by itself, nothing lost or doubled.

Real ``ragserve api`` and ``ragserve worker --health-port`` reach the session's PostgreSQL
through a TCP proxy that the test cuts (every connection dropped, new ones refused) and
restores. Submissions made during the cut are retried after it with the same
``Idempotency-Key``, as a client following ``Retry-After`` would.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from support import free_port, service_env
from support.pg_proxy import PgProxy
from support.workers import (
    events_by_job,
    ingest,
    logged,
    questions,
    started,
    submit,
    wait_for,
    wait_terminal,
    wait_worker_ready,
)

if TYPE_CHECKING:
    from support import MockLLM, Proc


OUTAGE_S = 7.0
ANSWER_WITHIN_S = 5.0  # RAGSERVE_DB_TIMEOUT_S (3) plus slack for a loaded machine


@dataclass
class Databases:
    direct: str
    proxied: str
    proxy: PgProxy


@pytest.fixture
def databases(new_database_url: Callable[[], str]) -> Iterator[Databases]:
    """A new database, and a URL that reaches it through a proxy the test controls."""
    direct = new_database_url()
    parts = urlsplit(direct)
    query = parse_qs(parts.query)
    socket_dir, port = query["host"][0], query.get("port", ["5432"])[0]
    proxy = PgProxy.to_unix_socket(f"{socket_dir}/.s.PGSQL.{port}")
    proxy.start()
    user = parts.username or "postgres"
    yield Databases(direct, f"postgresql://{user}@127.0.0.1:{proxy.port}{parts.path}", proxy)
    proxy.close()


@dataclass
class Seen:
    what: str
    status: int  # 0: no HTTP answer (connection error or timeout)
    took_s: float
    retry_after: str | None
    began: float = 0.0  # time.monotonic() when the call was made

    @property
    def ended(self) -> float:
        return self.began + self.took_s

    @classmethod
    def of(cls, what: str, response: httpx.Response, began: float) -> Seen:
        took = time.monotonic() - began
        return cls(what, response.status_code, took, response.headers.get("Retry-After"), began)


Held = tuple[str, str]  # (Idempotency-Key, question) of a submission that was refused


def call(client: httpx.Client, what: str, method: str, path: str) -> Seen:
    began = time.monotonic()
    try:
        response = client.request(method, path)
    except httpx.HTTPError:
        return Seen(what, 0, time.monotonic() - began, None, began)
    return Seen.of(what, response, began)


def submissions(url: str, stop: threading.Event) -> tuple[list[Seen], list[Held], list[str]]:
    """Submit questions until ``stop``: what was seen, what was refused, what was accepted."""
    seen: list[Seen] = []
    held: list[Held] = []
    accepted: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            key, question = str(uuid.uuid4()), f"[cut {len(seen)}] How long is the office open?"
            body = {"query": question, "collection": "kb"}
            began = time.monotonic()
            try:
                response = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                seen.append(Seen("POST /v1/jobs", 0, time.monotonic() - began, None, began))
                held.append((key, question))
                continue
            seen.append(Seen.of("POST /v1/jobs", response, began))
            if response.status_code == 202:
                accepted.append(response.json()["job_id"])
            else:
                held.append((key, question))
            time.sleep(0.1)
    return seen, held, accepted


def reads(url: str, job_id: str, stop: threading.Event) -> list[Seen]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return repeat(stop, lambda: call(client, "GET /v1/jobs/{id}", "GET", f"/v1/jobs/{job_id}"))


def probes(port: int, stop: threading.Event) -> list[Seen]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        return repeat(
            stop,
            lambda: call(client, "worker /readyz", "GET", "/readyz"),
            lambda: call(client, "worker /healthz", "GET", "/healthz"),
        )


def repeat(stop: threading.Event, *calls: Callable[[], Seen]) -> list[Seen]:
    seen: list[Seen] = []
    while not stop.is_set():
        seen += [make() for make in calls]
        time.sleep(0.1)
    return seen


def resubmit(client: httpx.Client, key: str, question: str) -> Callable[[], str | None]:
    """One retry of a submission: its job id once accepted, ``None`` on another 503."""

    def once() -> str | None:
        response = client.post(
            "/v1/jobs",
            json={"query": question, "collection": "kb"},
            headers={"Idempotency-Key": key},
        )
        assert response.status_code in (202, 503), response.text
        return str(response.json()["job_id"]) if response.status_code == 202 else None

    return once


def test_database_outage_answers_503_and_everything_recovers(
    databases: Databases,
    llm: MockLLM,
    spawn: Callable[..., Proc],
    start_service: Callable[..., tuple[str, Proc]],
) -> None:
    env = service_env(
        databases.proxied,
        llm_base_url=llm.base_url,
        worker_concurrency=8,
        health_db_lost_s=1,
    )
    health_port = free_port()
    worker = spawn(
        [sys.executable, "-m", "ragserve", "worker", "--health-port", str(health_port)],
        env,
        name="worker",
    )
    url, api = start_service(env, command="api")
    procs = (api, worker)
    wait_worker_ready(worker)
    health = httpx.Client(base_url=f"http://127.0.0.1:{health_port}", timeout=2)
    wait_for(lambda: health.get("/readyz").status_code == 200, 30, "worker ready", procs)

    with httpx.Client(base_url=url, timeout=30) as client:
        ingest(client, "kb", procs)
        llm.configure(ttft=3.0, tps=200)
        job_ids = submit(client, "kb", questions("before", 6))
        wait_for(lambda: len(started(worker, set(job_ids))) == 6, 20, "jobs running", procs)

        # -- the cut: clients keep calling from their threads meanwhile
        databases.proxy.cut()
        cut_at = time.monotonic()
        stop = threading.Event()
        with ThreadPoolExecutor(3) as pool:
            calls = [
                pool.submit(submissions, url, stop),
                pool.submit(reads, url, job_ids[0], stop),
                pool.submit(probes, health_port, stop),
            ]
            time.sleep(OUTAGE_S)
            databases.proxy.restore()
            restored_at = time.monotonic()
            stop.set()
            (seen_posts, held, accepted), seen_reads, seen_probes = (c.result() for c in calls)
        seen = seen_posts + seen_reads + seen_probes

        # -- after: the client retries what was refused, with the same key
        assert held, "no submission was refused during the cut"
        accepted += [
            wait_for(resubmit(client, key, question), 30, "a retried submission", procs)
            for key, question in held
        ]
        api_back_s = time.monotonic() - restored_at
        wait_for(lambda: health.get("/readyz").status_code == 200, 30, "worker ready", procs)
        worker_back_s = time.monotonic() - restored_at
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "API ready", procs)
        api_ready_s = time.monotonic() - restored_at
        all_ids = job_ids + accepted
        jobs = wait_terminal(client, all_ids, 120, procs)
        all_done_s = time.monotonic() - restored_at

    # Calls answered while the database was unreachable (not those that straddle the restore).
    in_cut = [s for s in seen if s.ended < restored_at]
    during = [s for s in in_cut if s.what.startswith(("POST", "GET"))]
    summary = {
        what: sorted({s.status for s in in_cut if s.what == what})
        for what in {s.what for s in in_cut}
    }

    def first_503(what: str) -> float:
        return min(s.ended for s in in_cut if s.what == what and s.status == 503) - cut_at

    print(
        f"during the {restored_at - cut_at:.1f} s cut: {len(seen)} calls, statuses {summary},"
        " slowest API answer"
        f" {max(s.took_s for s in during):.2f} s; worker /readyz 503 after"
        f" {first_503('worker /readyz'):.1f} s, /healthz after"
        f" {first_503('worker /healthz'):.1f} s;"
        " after restore: API accepted the retries in"
        f" {api_back_s:.2f} s, worker ready in {worker_back_s:.2f} s, API ready in"
        f" {api_ready_s:.2f} s, all"
        f" {len(all_ids)} jobs done in {all_done_s:.2f} s;"
        f" attempts {sorted(j['attempts'] for j in jobs.values())}"
    )

    # During the cut: 503 + Retry-After, within seconds; never a 500, never no answer.
    assert {s.status for s in during} == {503}, summary
    assert all(s.retry_after and int(s.retry_after) > 0 for s in during if s.status == 503)
    assert max(s.took_s for s in during) < ANSWER_WITHIN_S, [s for s in during if s.took_s > 3]
    # The worker's probes said so too.
    assert 503 in summary["worker /readyz"], summary
    assert 503 in summary["worker /healthz"], summary
    assert 0 not in summary["worker /readyz"], summary

    # After: everything accepted finished, once; no process exited.
    assert {j["status"] for j in jobs.values()} == {"succeeded"}, jobs
    events = events_by_job(databases.direct, all_ids)
    for job_id in all_ids:
        assert [e["type"] for e in events[job_id]].count("done") == 1, events[job_id]
    assert api.popen.poll() is None and worker.popen.poll() is None
    assert logged(worker, "worker.reconnect"), worker.log()[-3000:]
    assert health.get("/healthz").status_code == 200
    health.close()
