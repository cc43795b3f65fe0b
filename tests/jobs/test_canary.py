"""Canary routing with real processes: ``RAGSERVE_CANARY_PERCENT`` of new jobs run on the canary
worker while it lives; once it is gone, nothing waits for it.

The two workers differ in their LLM model name, so their versions (package + configuration
hash) differ, and each job's ``version`` tells which one ran it.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from support import service_env
from support.workers import (
    ingest,
    questions,
    submit,
    wait_terminal,
    wait_worker_ready,
)

if TYPE_CHECKING:
    from support import MockLLM, Proc


def test_canary_gets_its_share_and_its_orphans_come_back(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
    start_worker: Callable[..., Proc],
) -> None:
    base = service_env(new_database_url(), llm_base_url=llm.base_url, worker_concurrency=8)
    stable = start_worker({**base, "RAGSERVE_LLM_MODEL": "stable-model"})
    canary = start_worker(
        {
            **base,
            "RAGSERVE_LLM_MODEL": "canary-model",
            "RAGSERVE_WORKER_TRACK": "canary",
            "RAGSERVE_WORKER_CONCURRENCY": "2",
        }
    )
    url, api = start_service({**base, "RAGSERVE_CANARY_PERCENT": "50"}, command="api")
    procs = (api, stable, canary)
    for worker in (stable, canary):
        wait_worker_ready(worker)

    with httpx.Client(base_url=url, timeout=10) as client:
        ingest(client, "kb", procs)

        # 1. While the canary lives it gets about half of the new jobs.
        first = submit(client, "kb", questions("share", 40))
        jobs = wait_terminal(client, first, 90, procs)
        assert {j["status"] for j in jobs.values()} == {"succeeded"}, jobs
        versions = Counter(j["version"] for j in jobs.values())
        assert len(versions) == 2, versions  # both ran some: one stable, one canary version
        # Binomial(40, 0.5): 8..32 holds with probability > 0.9999.
        assert all(8 <= n <= 32 for n in versions.values()), versions
        print(f"versions of 40 jobs at 50 %: {dict(versions)}")

        # 2. The canary dies with a backlog (2 slots, slow answers): its running and waiting
        # jobs go back to the stable queues and finish on the stable worker.
        llm.configure(ttft=3.0, tps=200)
        second = submit(client, "kb", questions("orphans", 16))
        canary.signal(signal.SIGKILL)
        assert canary.wait(10) == -signal.SIGKILL
        llm.configure(ttft=0.05, tps=200)
        jobs = wait_terminal(client, second, 120, (api, stable))
    assert {j["status"] for j in jobs.values()} == {"succeeded"}, jobs
    returned = [line for line in stable.log().splitlines() if "canary.orphans_returned" in line]
    assert returned, "the stable worker never brought canary jobs back"
