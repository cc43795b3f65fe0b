"""2 API replicas + 2 workers behind nginx: submissions, idempotency and streaming through it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from topology.conftest import Cluster
from topology.helpers import ingest, replay_events, sse_events, submit, wait_terminal

JOBS = 20


def test_jobs_and_streams_through_nginx(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(apis=2, workers=2, mock_ttft=0.05, mock_tps=200)
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        ingest(client, cluster)

        # 20 submissions from 8 concurrent clients, each with its own Idempotency-Key.
        keys = [f"lb-{i}" for i in range(JOBS)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda i: submit(client, f"[{i}] When does Aurora open?", keys[i]), range(JOBS)
                )
            )
        submitted_s = time.monotonic() - t0
        assert [a.status_code for a in answers] == [202] * JOBS, [a.text for a in answers]
        job_ids = [a.json()["job_id"] for a in answers]
        assert len(set(job_ids)) == JOBS
        jobs = wait_terminal(client, job_ids, 60, cluster)
        elapsed = time.monotonic() - t0
        assert {j["status"] for j in jobs.values()} == {"succeeded"}, jobs
        assert all("eight in the morning" in j["result"]["answer"] for j in jobs.values())
        print(
            f"\n{JOBS} jobs through nginx: submitted in {submitted_s:.2f} s, all succeeded "
            f"after {elapsed:.2f} s ({JOBS / elapsed:.1f} jobs/s end to end)"
        )

        # The same key again (a client retrying): the same job, whichever replica answers.
        again = submit(client, "[3] When does Aurora open?", keys[3])
        assert again.status_code == 202 and again.json()["job_id"] == job_ids[3]

        # least_conn spread the submissions over both replicas.
        posts = [e for e in cluster.nginx.access_log() if e["method"] == "POST"]
        replicas = Counter(e["up"] for e in posts)
        assert set(replicas) == {f"127.0.0.1:{p}" for p in cluster.api_ports}, replicas

        # An event stream through nginx is not buffered: the first token arrives while the
        # job is still running, then the rest, then `done`.
        cluster.configure_mock(ttft=0.2, tps=10)
        job_id = submit(client, "When does the Aurora office open, exactly?").json()["job_id"]
        t_start = time.monotonic()
        arrivals: list[tuple[float, str]] = []
        status_at_first_token = None
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in sse_events(response):
                arrivals.append((time.monotonic() - t_start, event["event"]))
                if event["event"] == "token" and status_at_first_token is None:
                    status_at_first_token = client.get(f"/v1/jobs/{job_id}").json()["status"]
        kinds = [kind for _, kind in arrivals]
        assert kinds[-1] == "done" and kinds.count("done") == 1, kinds
        assert kinds.count("token") > 10, kinds
        assert status_at_first_token == "running"
        first_token = next(t for t, kind in arrivals if kind == "token")
        done = arrivals[-1][0]
        # ~30 tokens at 10/s: a buffered stream would deliver them all at once, at the end.
        assert done - first_token > 1.5, arrivals
        print(f"stream: first token {first_token:.2f} s, done {done:.2f} s")
        # A finished job's stream replays the same events (any replica).
        assert [e["event"] for e in replay_events(client, job_id)] == kinds


def test_replicas_replaced_one_at_a_time(start_cluster: Callable[..., Cluster]) -> None:
    """The cluster's rollout operations: a new API replica behind nginx (reload), the old one
    drained; a new worker, the old one drained. Submissions keep working throughout."""
    cluster = start_cluster(apis=2, workers=1)
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        ingest(client, cluster)
        old_port, old_api, old_worker = cluster.api_ports[0], cluster.apis[0], cluster.workers[0]
        cluster.replace_api(0)
        cluster.replace_worker(0)
        assert old_api.returncode == 0 and old_worker.returncode == 0  # drained, not killed
        assert cluster.api_ports[0] != old_port
        mark = len(cluster.nginx.access_log())
        answers = [submit(client, f"[after {i}] When does Aurora open?") for i in range(6)]
        assert [a.status_code for a in answers] == [202] * 6
        jobs = wait_terminal(client, [a.json()["job_id"] for a in answers], 60, cluster)
        assert {j["status"] for j in jobs.values()} == {"succeeded"}
        upstreams = {e["up"] for e in cluster.nginx.access_log()[mark:]}
        assert f"127.0.0.1:{old_port}" not in upstreams
        assert f"127.0.0.1:{cluster.api_ports[0]}" in upstreams
