"""Rolling upgrade under load: every API replica and every worker replaced, one at a time, by a
build with one more (expand-only) migration, while clients submit, poll and stream through
nginx with the bundled client and its documented retries.

The scenario is ``bench/rolling_upgrade.py`` (the benchmark runs it with more load and a
second round); this test asserts on it. Run with ``-s`` to see the raw errors that nginx saw
or answered before the client's retries, and the latencies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import httpx
import psycopg

from rolling_upgrade import PROBE_MIGRATION, next_build, report, run_scenario
from topology.conftest import Cluster
from topology.helpers import cluster_logs

PROBE_VERSION = int(PROBE_MIGRATION.rsplit("/", 1)[1][:4])


def _after(child_events: list[dict[str, object]], moment: dt.datetime) -> int:
    """How many of a process's log events were written after ``moment``."""
    return sum(1 for e in child_events if dt.datetime.fromisoformat(str(e["ts"])) > moment)


def test_rolling_upgrade_under_load(start_cluster: Callable[..., Cluster]) -> None:
    # One worker keeps the test short on a busy machine (each process start costs seconds of
    # CPU); the benchmark replaces two. During its replacement old and new run side by side.
    cluster = start_cluster(
        apis=2,
        workers=1,
        worker_health=True,
        # Answers of ~3 s: streams are open when a replica drains, and workers hold jobs.
        mock_ttft=0.5,
        mock_tps=15,
        env={"RAGSERVE_SSE_DRAIN_S": "0.5", "RAGSERVE_DRAIN_S": "10"},
    )
    build = next_build(cluster.workdir / "next")
    assert build.src is not None
    # The new replicas import the copy, not the (editable) installed package.
    assert build.package_file(cluster.env()).is_relative_to(build.src)
    old_apis, old_workers = list(cluster.apis), list(cluster.workers)

    # Before each replacement: every running process's /readyz (old ones included, which by
    # the second step run on the schema the first new replica migrated).
    readiness: list[tuple[str, str, int]] = []

    def probe(kind: str, index: int) -> None:
        urls = {c.name: f"{cluster.api_url(i)}/readyz" for i, c in enumerate(cluster.apis)}
        urls |= {c.name: c.readyz_url for c in cluster.workers if c.readyz_url}
        for name, url in urls.items():
            readiness.append((f"{kind} {index}", name, httpx.get(url, timeout=5).status_code))

    run = run_scenario(
        cluster, [build], rate=1.5, before_s=2, after_s=2, streamers=3, before_step=probe
    )
    outcome = run.outcome
    print(f"\n{report(outcome)}")
    context = f"{report(outcome)}\n{cluster_logs(cluster)}"

    # Every replica was replaced, one at a time, and every old one drained and exited 0.
    assert [s.what for s in run.steps] == ["api 0 -> next", "api 1 -> next", "worker 0 -> next"]
    assert [s.old_exit for s in run.steps] == [0, 0, 0], context
    assert not {c.pid for c in cluster.apis + cluster.workers} & {
        c.pid for c in old_apis + old_workers
    }

    # What clients saw after the documented retries: nothing failed, lost or repeated.
    assert outcome.submissions >= 20 and outcome.accepted == outcome.submissions, context
    assert outcome.failed == [], context
    assert outcome.final == {"succeeded": outcome.accepted}, context
    assert outcome.lost == 0 and outcome.duplicated == 0, context
    assert outcome.terminal_events == {1: outcome.accepted}, context
    assert outcome.successes == {1: outcome.accepted}, context
    assert outcome.poll_errors == [] and outcome.polls > 0, context
    # Every followed stream complete: ends with `done`, ids contiguous, nothing repeated; and
    # at least one of them was cut by a draining replica and resumed elsewhere.
    assert outcome.streams >= 5 and outcome.streams_broken == [], context
    assert outcome.stream_connections > outcome.streams, context

    # The expand-only migration was applied by the first new replica, and the old replicas
    # kept working on the migrated schema until they were replaced.
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT applied_at FROM ragserve_schema_migrations WHERE version = %s",
            (PROBE_VERSION,),
        ).fetchone()
        assert row is not None, context
        applied_at: dt.datetime = row[0]
        column = conn.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'jobs' AND column_name = 'rollout_probe'"
        ).fetchone()
        assert column is not None
    old_names = {c.name for c in old_apis + old_workers}
    old_probed_after = [r for r in readiness if r[0] != "api 0" and r[1] in old_names]
    assert len(old_probed_after) == 3, readiness  # old API 1 and worker 0, old API 1 gone
    assert all(r[2] == 200 for r in readiness), readiness
    assert _after(old_apis[1].log_events("job.queued"), applied_at) > 0, context
    old_worker_jobs = sum(_after(w.log_events("job.succeeded"), applied_at) for w in old_workers)
    assert old_worker_jobs > 0, context
    print(
        f"migration applied at {applied_at:%H:%M:%S}; after it, old API 1 queued "
        f"{_after(old_apis[1].log_events('job.queued'), applied_at)} jobs, old workers ran "
        f"{old_worker_jobs}; steps: " + ", ".join(f"{s.what} {s.seconds:.1f} s" for s in run.steps)
    )
