"""Rolling upgrade under load: every API replica and every worker replaced one at a time while
clients submit, poll and stream through nginx; what the clients saw, before, during and after.

Run it::

    python bench/rolling_upgrade.py --apis 2 --workers 2 --rate 4 --before 10 --after 10 \\
        --ttft 0.3 --tps 20 [--rounds same,next] [--procedure surge|restart] [--json out.json]

The cluster is ``bench/cluster.py`` (standalone PostgreSQL, nginx, ``ragserve api`` and
``ragserve worker --health-port``, the mock LLM). Clients use the bundled
:class:`ragserve.client.ApiClient` with its documented retry policy: submissions carry an
``Idempotency-Key`` and are retried on connection errors, 502, 503 and 504; event streams
resume with ``Last-Event-ID``. The load: ``--submitters`` threads sending ``--rate``
submissions per second in all, ``--pollers`` threads reading accepted jobs, ``--streamers``
threads each following the newest accepted job's event stream to its end.

A rollout is one or more rounds; each replaces every API replica (a new one on a new port,
ready, nginx reloaded, SIGTERM to the old one, wait for its exit), then every worker (a new
one, ``/readyz`` 200, SIGTERM to the old one, wait for its exit). Round ``same`` starts the
installed code again; round ``next`` starts a copy of the source tree with one more,
expand-only, migration (``0099_rollout_probe``), which the first new replica applies while
old replicas keep running on the migrated schema. ``--procedure restart`` does without the
surge (stop the old process, then start the new one in its place, nginx not told): a harsher
procedure that leans on nginx's passive health check and on the clients' retries.

Printed: requests sent / failed after retries / retried (tries beyond the first, counted at
nginx), the raw errors nginx saw or answered before those retries, jobs lost (accepted but
not succeeded) and duplicated (more than one terminal event, or more than one success logged
by the workers), event streams complete / resumed, and submission latency p50/p99 (one
logical submission, retries included) before, during and after the rollout.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from _common import bench_parser, format_table, latency_summary, machine_info, machine_line
from cluster import Build, Cluster, ClusterConfig, copy_build
from ragserve.client import TERMINAL_STATUSES, ApiClient, ClientError, JobEvent, RetryPolicy

COLLECTION = "handbook"
# The mock LLM answers with the first sentence of the best passage, one word per token: about
# 40 tokens, so ``--tps`` sets how long a job holds its worker and its stream stays open.
DOC = (
    "The Aurora office opens at eight in the morning and closes at six in the evening on "
    "every weekday except public holidays, when the building stays locked and the guards on "
    "duty let in only staff with a signed permit from facilities. "
    "Employees may work remotely up to two days a week after their manager agrees."
)
PROBE_MIGRATION = "db/migrations/0099_rollout_probe.sql"
PROBE_SQL = (
    "-- Expand-only (a rollout probe): a nullable column that the old code neither reads nor\n"
    "-- writes, so old and new replicas run side by side on the migrated schema.\n"
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS rollout_probe text;\n"
)
ROUNDS = ("same", "next")
PROCEDURES = ("surge", "restart")
_JOB_PATH = re.compile(r"^/v1/jobs/[^/]+")


# --------------------------------------------------------------------------- the load


@dataclass
class Submission:
    """One logical submission (all its tries): when it started, how long it took, its job."""

    at: float  # seconds since the load started
    key: str
    seconds: float = 0.0
    job_id: str | None = None
    error: str | None = None  # after the client's retries


@dataclass
class Stream:
    """One followed event stream (all its connections)."""

    job_id: str
    events: list[JobEvent] = field(default_factory=list)
    error: str | None = None


class RollingLoad:
    """Client threads through the load balancer, recording what each logical call ended as."""

    def __init__(
        self,
        url: str,
        *,
        rate: float,
        submitters: int = 3,
        pollers: int = 1,
        streamers: int = 2,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self.submissions: list[Submission] = []
        self.streams: list[Stream] = []
        self.poll_errors: list[str] = []
        self.polls = 0
        self.t0 = time.monotonic()
        self._interval = submitters / rate
        self._counts = (submitters, pollers, streamers)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._followed: set[str] = set()  # jobs a streamer has taken

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        submitters, pollers, streamers = self._counts
        loops = [self._submitter] * submitters + [self._poller] * pollers
        loops += [self._streamer] * streamers
        for n, loop in enumerate(loops):
            thread = threading.Thread(target=loop, args=(n,), name=f"load-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.retry.deadline_s + 30)

    def accepted(self) -> list[str]:
        with self._lock:
            return [s.job_id for s in self.submissions if s.job_id]

    def _client(self) -> ApiClient:
        return ApiClient(self.url, timeout=10, retry=self.retry, stream_read_timeout=20)

    def _submitter(self, n: int) -> None:
        """Paced submissions, each a question of its own (no cache hit, no coalescing)."""
        with self._client() as client:
            self._stop.wait(self._interval * n / self._counts[0])  # spread the threads out
            due = time.monotonic()
            count = 0
            while not self._stop.is_set():
                count += 1
                record = Submission(self.now(), str(uuid.uuid4()))
                start = time.monotonic()
                try:
                    job = client.submit(
                        f"[{n}.{count}] When does the Aurora office open?",
                        COLLECTION,
                        idempotency_key=record.key,
                    )
                    record.job_id = str(job["job_id"])
                except ClientError as exc:
                    record.error = f"{type(exc).__name__}: {exc}"
                record.seconds = time.monotonic() - start
                with self._lock:
                    self.submissions.append(record)
                due += self._interval
                self._stop.wait(max(0.0, due - time.monotonic()))

    def _poller(self, n: int) -> None:
        """``GET /v1/jobs/{id}`` of random accepted jobs, every 0.2 s."""
        with self._client() as client:
            while not self._stop.wait(0.2):
                jobs = self.accepted()
                if not jobs:
                    continue
                try:
                    client.get_job(random.choice(jobs))
                    self.polls += 1
                except ClientError as exc:
                    self.poll_errors.append(f"{type(exc).__name__}: {exc}")

    def _streamer(self, n: int) -> None:
        """Follow the newest accepted job that no one follows yet to its end, then the next."""
        with self._client() as client:
            while not self._stop.is_set():
                with self._lock:
                    fresh = [s.job_id for s in self.submissions if s.job_id]
                    fresh = [j for j in fresh if j not in self._followed]
                    if fresh:
                        self._followed.add(fresh[-1])
                if not fresh:
                    self._stop.wait(0.1)
                    continue
                stream = Stream(fresh[-1])
                try:
                    stream.events.extend(client.stream_events(stream.job_id))
                except ClientError as exc:
                    stream.error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.streams.append(stream)


# --------------------------------------------------------------------------- the rollout


@dataclass
class Step:
    what: str  # "api 0 -> next"
    started: float  # seconds since the load started
    seconds: float
    old_exit: int | None


def next_build(dest: Path) -> Build:
    """This tree's code plus the expand-only probe migration."""
    return copy_build(dest, "next", {PROBE_MIGRATION: PROBE_SQL})


def roll(
    cluster: Cluster,
    build: Build,
    now: Callable[[], float],
    log: Callable[[str], None] = print,
    before_step: Callable[[str, int], None] | None = None,
    procedure: str = "surge",
) -> list[Step]:
    """Replace every API replica, then every worker, one at a time, by ``build``;
    ``before_step(kind, index)`` runs before each replacement (a test's probe).

    ``procedure`` "surge": the new process first, ready, then the old one drained (the
    documented procedure); "restart": the old one drained first, then the new one started in
    its place (no surge; for APIs on the same port, nginx not told, its passive health check
    and the clients' retries cover the gap)."""
    if procedure not in PROCEDURES:
        raise ValueError(f"procedure: one of {PROCEDURES}, not {procedure!r}")
    steps = []
    plan = [("api", i) for i in range(len(cluster.apis))]
    plan += [("worker", i) for i in range(len(cluster.workers))]
    for kind, index in plan:
        if before_step is not None:
            before_step(kind, index)
        old = cluster.apis[index] if kind == "api" else cluster.workers[index]
        start = now()
        if kind == "api" and procedure == "surge":
            cluster.replace_api(index, build=build)
        elif kind == "api":
            cluster.restart_api(index, build=build)
        elif procedure == "surge":
            cluster.replace_worker(index, build=build)
        else:
            cluster.restart_worker(index, build=build)
        step = Step(f"{kind} {index} -> {build.name}", start, now() - start, old.returncode)
        log(f"  {step.what}: {step.seconds:.1f} s (old one exited {step.old_exit})")
        steps.append(step)
    return steps


# --------------------------------------------------------------------------- the outcome


@dataclass
class Outcome:
    submissions: int
    failed: list[str]  # errors of submissions that failed after retries
    tries: int  # POST /v1/jobs seen at nginx
    raw_errors: Counter[tuple[str, str, str, str]]  # (method, route, status, upstream statuses)
    accepted: int
    duplicate_keys: int  # submissions whose key made two jobs (never expected)
    final: Counter[str]  # final status of the accepted jobs
    terminal_events: Counter[int]  # terminal events per job -> number of jobs
    successes: Counter[int]  # "job.succeeded" log lines per job -> number of jobs
    streams: int
    streams_broken: list[str]  # why each incomplete stream is not complete
    stream_connections: int  # GET .../events seen at nginx for the followed jobs
    polls: int
    poll_errors: list[str]
    latency: dict[str, dict[str, float]]  # phase -> latency_summary

    @property
    def retried(self) -> int:
        return self.tries - self.submissions

    @property
    def lost(self) -> int:
        return self.accepted - self.final["succeeded"]

    @property
    def duplicated(self) -> int:
        extra_terminal = sum(n for count, n in self.terminal_events.items() if count > 1)
        extra_success = sum(n for count, n in self.successes.items() if count > 1)
        return self.duplicate_keys + max(extra_terminal, extra_success)


def route(uri: str) -> str:
    return _JOB_PATH.sub("/v1/jobs/{id}", uri)


def raw_errors(entries: Sequence[dict[str, str]]) -> Counter[tuple[str, str, str, str]]:
    """Answers nginx gave that were not a success, and successes after which nginx had tried
    another replica first (``upstatus`` "502, 202"): what clients would see without retries."""
    return Counter(
        (e["method"], route(e["uri"]), e["status"], e["upstatus"])
        for e in entries
        if not e["status"].startswith("2") or "," in e["upstatus"]
    )


def stream_problems(stream: Stream) -> str | None:
    """Why a followed stream is not complete: ends with ``done``, ids contiguous and unique."""
    if stream.error:
        return stream.error
    kinds = [e.event for e in stream.events]
    if not kinds or kinds[-1] != "done" or kinds.count("done") != 1 or "error" in kinds:
        return f"{stream.job_id}: events {kinds}"
    ids = [int(e.id or -1) for e in stream.events]
    if ids != list(range(ids[0], ids[0] + len(ids))):
        return f"{stream.job_id}: ids {ids}"
    return None


def wait_settled(
    client: httpx.Client, job_ids: Sequence[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Every job's body once all are terminal, or as they are at ``timeout``."""
    deadline = time.monotonic() + timeout
    jobs: dict[str, dict[str, Any]] = {}
    while True:
        for job_id in job_ids:
            if jobs.get(job_id, {}).get("status") not in TERMINAL_STATUSES:
                response = client.get(f"/v1/jobs/{job_id}")
                if response.status_code == 200:
                    jobs[job_id] = response.json()
        done = all(jobs.get(j, {}).get("status") in TERMINAL_STATUSES for j in job_ids)
        if done or time.monotonic() > deadline:
            return jobs
        time.sleep(0.3)


def terminal_events_per_job(database_url: str, job_ids: Sequence[str]) -> dict[str, int]:
    """Stored ``done``/``error`` events of each job (all attempts), read from the database:
    the strongest "exactly once" check (a replayed stream stops at the first one)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT j, count(e.job_id) FROM unnest(%s::uuid[]) AS j"
            " LEFT JOIN job_events e ON e.job_id = j AND e.type IN ('done', 'error')"
            " GROUP BY j",
            (list(job_ids),),
        ).fetchall()
    return {str(job_id): int(count) for job_id, count in rows}


def analyse(
    cluster: Cluster,
    load: RollingLoad,
    nginx_entries: Sequence[dict[str, str]],
    phases: dict[str, tuple[float, float]],
    settle_s: float = 90,
) -> Outcome:
    """What the clients saw (``nginx_entries``: the access log of the load only)."""
    subs = load.submissions
    accepted = sorted({s.job_id for s in subs if s.job_id})
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        jobs = wait_settled(client, accepted, settle_s)
    final = Counter(jobs.get(j, {}).get("status", "missing") for j in accepted)
    per_job = terminal_events_per_job(cluster.database_url, accepted)
    logged = Counter(
        e["job_id"]
        for child in cluster.all_workers_ever
        for e in child.log_events("job.succeeded")
        if e.get("job_id") in per_job
    )
    followed = {s.job_id for s in load.streams}
    latency = {}
    for name, (start, end) in phases.items():
        seconds = [s.seconds for s in subs if start <= s.at < end and s.job_id]
        if seconds:
            latency[name] = latency_summary(seconds)
    return Outcome(
        submissions=len(subs),
        failed=[s.error for s in subs if s.error],
        tries=sum(1 for e in nginx_entries if e["method"] == "POST" and e["uri"] == "/v1/jobs"),
        raw_errors=raw_errors(nginx_entries),
        accepted=len(accepted),
        duplicate_keys=sum(1 for s in subs if s.job_id) - len(accepted),
        final=final,
        terminal_events=Counter(per_job.values()),
        successes=Counter(logged[j] for j in accepted),
        streams=len(load.streams),
        streams_broken=[p for p in map(stream_problems, load.streams) if p],
        stream_connections=sum(
            1
            for e in nginx_entries
            if e["method"] == "GET"
            and e["uri"].endswith("/events")
            and e["uri"].split("/")[3] in followed
        ),
        polls=load.polls,
        poll_errors=load.poll_errors,
        latency=latency,
    )


def report(outcome: Outcome) -> str:
    o = outcome
    lines = [
        f"submissions: {o.submissions} sent, {len(o.failed)} failed after retries, "
        f"{o.retried} retried (tries at nginx: {o.tries})",
        f"jobs: {o.accepted} accepted, {o.lost} lost, {o.duplicated} duplicated; "
        f"final {dict(o.final)}; terminal events per job {dict(o.terminal_events)}; "
        f"successes logged per job {dict(o.successes)}",
        f"streams: {o.streams} followed, {len(o.streams_broken)} incomplete, "
        f"{o.stream_connections - o.streams} reconnections (a resume after a drain, or a"
        " retried connect)",
        f"polls: {o.polls} answered, {len(o.poll_errors)} failed after retries",
        "raw errors before retries (method, route, status, upstream statuses): "
        + (", ".join(f"{k} x{n}" for k, n in sorted(o.raw_errors.items())) or "none"),
        "",
        format_table(
            ["phase", "submissions", "p50 ms", "p99 ms", "max ms"],
            [
                [name, int(s["n"]), s["p50_ms"], s["p99_ms"], s["max_ms"]]
                for name, s in o.latency.items()
            ],
        ),
    ]
    for what, errors in (("failed", o.failed), ("broken streams", o.streams_broken)):
        lines += [f"{what}: {e}" for e in errors[:10]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the scenario


def ingest(cluster: Cluster) -> None:
    """The one document every question is answered from (the JSON ingest has no client call)."""
    response = httpx.post(
        f"{cluster.url}/v1/collections/{COLLECTION}/documents",
        json={"documents": [{"text": DOC, "source": "aurora.txt", "metadata": {}}]},
        timeout=30,
    )
    response.raise_for_status()
    job_id = response.json()["job_id"]
    with ApiClient(cluster.url, timeout=30) as client:
        deadline = time.monotonic() + 120
        while (status := client.get_job(job_id)["status"]) not in TERMINAL_STATUSES:
            if time.monotonic() > deadline:
                raise TimeoutError("ingest not finished within 120 s")
            time.sleep(0.2)
    if status != "succeeded":
        raise RuntimeError(f"ingest {status}")


@dataclass
class Run:
    outcome: Outcome
    steps: list[Step]
    phases: dict[str, tuple[float, float]]


def run_scenario(
    cluster: Cluster,
    builds: Sequence[Build],
    *,
    rate: float,
    before_s: float,
    after_s: float,
    submitters: int = 3,
    pollers: int = 1,
    streamers: int = 2,
    log: Callable[[str], None] = print,
    before_step: Callable[[str, int], None] | None = None,
    procedure: str = "surge",
) -> Run:
    """Load through the cluster, a rollout per build, then the outcome."""
    ingest(cluster)
    mark = len(cluster.nginx.access_log())
    load = RollingLoad(
        cluster.url, rate=rate, submitters=submitters, pollers=pollers, streamers=streamers
    )
    load.start()
    steps: list[Step] = []
    try:
        time.sleep(before_s)
        rollout_start = load.now()
        for build in builds:
            log(f"rollout to {build.name} at {load.now():.1f} s")
            steps += roll(cluster, build, load.now, log, before_step, procedure)
        rollout_end = load.now()
        time.sleep(after_s)
    finally:
        load.stop()
    end = load.now()
    phases = {
        "before": (0.0, rollout_start),
        "during": (rollout_start, rollout_end),
        "after": (rollout_end, end),
    }
    entries = cluster.nginx.access_log()[mark:]
    return Run(analyse(cluster, load, entries, phases), steps, phases)


def parse_args(argv: Sequence[str] | None = None) -> Any:
    parser = bench_parser(__doc__)
    parser.add_argument("--apis", type=int, default=2, help="API replicas")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--rate", type=float, default=4, help="submissions per second, in all")
    parser.add_argument("--before", type=float, default=10, help="seconds of load before")
    parser.add_argument("--after", type=float, default=10, help="seconds of load after")
    parser.add_argument("--ttft", type=float, default=0.3, help="mock LLM time to first token")
    parser.add_argument("--tps", type=float, default=20, help="mock LLM tokens per second")
    parser.add_argument("--submitters", type=int, default=3, help="submitting threads")
    parser.add_argument("--pollers", type=int, default=1, help="polling threads")
    parser.add_argument("--streamers", type=int, default=2, help="event-stream threads")
    parser.add_argument("--sse-drain", type=float, default=2, help="RAGSERVE_SSE_DRAIN_S")
    parser.add_argument("--drain", type=float, default=10, help="RAGSERVE_DRAIN_S")
    parser.add_argument(
        "--rounds",
        default="same,next",
        help="rollout rounds: 'same' (the installed code again), 'next' (+ a migration)",
    )
    parser.add_argument(
        "--procedure",
        choices=PROCEDURES,
        default="surge",
        help="surge: new process ready before the old one stops (default); restart: stop, "
        "then start in its place",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep-logs", type=Path, help="write the cluster's logs here (kept)")
    args = parser.parse_args(argv)
    args.rounds = [r.strip() for r in args.rounds.split(",") if r.strip()]
    if not args.rounds or set(args.rounds) - set(ROUNDS):
        parser.error(f"--rounds: a comma-separated list of {', '.join(ROUNDS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    config = ClusterConfig(
        apis=args.apis,
        workers=args.workers,
        mock_ttft=args.ttft,
        mock_tps=args.tps,
        env={"RAGSERVE_SSE_DRAIN_S": str(args.sse_drain), "RAGSERVE_DRAIN_S": str(args.drain)},
        workdir=args.keep_logs,
        worker_health=True,
    )
    t0 = time.monotonic()
    with Cluster(config) as cluster:
        up_s = time.monotonic() - t0
        print(f"cluster of {args.apis} api + {args.workers} workers up in {up_s:.1f} s")
        builds = [
            Build(name="same") if r == "same" else next_build(cluster.workdir / "next")
            for r in args.rounds
        ]
        run = run_scenario(
            cluster,
            builds,
            rate=args.rate,
            before_s=args.before,
            after_s=args.after,
            submitters=args.submitters,
            pollers=args.pollers,
            streamers=args.streamers,
            procedure=args.procedure,
        )
    o = run.outcome
    print(report(o))
    print(machine_line(machine, at_end=" ".join(f"{x:.2f}" for x in os.getloadavg())))
    if args.json:
        figures = {
            "machine": machine,
            "args": {k: str(v) for k, v in vars(args).items()},
            "sent": o.submissions,
            "failed": len(o.failed),
            "retried": o.retried,
            "lost": o.lost,
            "duplicated": o.duplicated,
            "raw_errors": [[*k, n] for k, n in o.raw_errors.items()],
            "streams": o.streams,
            "streams_incomplete": len(o.streams_broken),
            "reconnections": o.stream_connections - o.streams,
            "latency": o.latency,
            "steps": [vars(s) for s in run.steps],
        }
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if not (o.failed or o.lost or o.duplicated or o.streams_broken) else 1


if __name__ == "__main__":
    sys.exit(main())
