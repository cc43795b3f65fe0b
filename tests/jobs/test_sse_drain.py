"""SIGTERM on a ``ragserve serve`` with an open event stream: the stream ends after the grace
period without a terminal event, and the client resumes on another process with
``Last-Event-ID``: every event exactly once, ending with ``done``.

Real processes on one database; the mock LLM streams slowly, so the job is mid-answer when
the first process is told to stop (its worker hands the job back; the second one finishes it).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx

from support import service_env
from support.workers import (
    events_by_job,
    ingest,
    questions,
    submit,
)

if TYPE_CHECKING:
    from support import MockLLM, Proc


SSE_DRAIN_S = 2.0
MARGIN_S = 3.0
TERMINAL_EVENTS = {"done", "error"}


def sse_frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The fields of each frame (``id``, ``event``, ``data``, ``retry``); comments skipped."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def test_sigterm_ends_open_streams_and_they_resume_elsewhere(
    new_database_url: Callable[[], str],
    llm: MockLLM,
    start_service: Callable[..., tuple[str, Proc]],
) -> None:
    database_url = new_database_url()
    env = service_env(database_url, llm_base_url=llm.base_url, drain_s=3, sse_drain_s=SSE_DRAIN_S)
    first_url, first = start_service(env)
    with httpx.Client(base_url=first_url, timeout=10) as client:
        ingest(client, "kb", (first,))
        llm.configure(ttft=0.05, tps=1.5)  # the ~15-token answer takes ~10 s
        (job_id,) = submit(client, "kb", questions("drain", 1))

    frames: list[dict[str, str]] = []
    stopped_at = ended_at = 0.0
    with (
        httpx.Client(base_url=first_url, timeout=SSE_DRAIN_S + 10) as client,
        client.stream("GET", f"/v1/jobs/{job_id}/events") as response,
    ):
        assert response.status_code == 200
        for frame in sse_frames(response):
            frames.append(frame)
            if frame.get("event") == "token" and not stopped_at:
                first.signal(signal.SIGTERM)
                stopped_at = time.monotonic()
        ended_at = time.monotonic()
    assert stopped_at, f"no token before the stream ended: {frames}\n{first.log()[-3000:]}"
    assert frames[0]["retry"] == "1000" and frames[0]["id"], frames[:2]  # the first event
    assert all("retry" not in f for f in frames[1:]), frames
    before = [f for f in frames if "id" in f]
    assert not TERMINAL_EVENTS & {f["event"] for f in before}, before
    ended_after = ended_at - stopped_at
    print(f"stream ended {ended_after:.2f} s after SIGTERM (grace {SSE_DRAIN_S} s)")
    assert SSE_DRAIN_S - 0.5 <= ended_after <= SSE_DRAIN_S + MARGIN_S, ended_after
    assert first.wait(20) == 0, first.log()[-3000:]

    # The client resumes on another replica, from the last id it saw.
    second_url, second = start_service(env)
    last_id = before[-1]["id"]
    with (
        httpx.Client(base_url=second_url, timeout=60) as client,
        client.stream(
            "GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": last_id}
        ) as response,
    ):
        assert response.status_code == 200
        resumed = [f for f in sse_frames(response) if "id" in f]
    assert resumed and resumed[-1]["event"] == "done", (resumed, second.log()[-3000:])

    seen = [int(f["id"]) for f in before + resumed]
    stored = [e["seq"] for e in events_by_job(database_url, [job_id])[job_id]]
    assert seen == stored, (seen, stored)  # nothing lost, nothing repeated, in order
    assert len(set(seen)) == len(seen)
    assert [f["event"] for f in before + resumed].count("done") == 1
