"""``bench/peers.py`` and ``bench/job_cost.py`` run as a user runs them, at tiny sizes.

Every system that can run here is measured: ragserve (``serve``, ``api`` + 2 workers), the
FastAPI prototypes and, when Debian's ``redis-server`` and the ``celery`` / ``redis`` packages
are installed, the FastAPI + Celery + Redis peer (its tests are skipped otherwise, saying why).
The figures are read back from the printed tables: every question answered where the
system promises it, latencies ordered, rates positive. The real runs are in
docs/BENCHMARKS.md ("Peers") and docs/PERFORMANCE.md.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from test_bench_smoke import bench, row, table_rows

from peers import celery_missing

CELERY = celery_missing()
TINY = ("--n", 4, "--concurrency", 4, "--ttft", 0.2, "--tps", 100, "--poll", 0.1)
TINY += ("--single-runs", 1)


def section(output: str, title: str) -> str:
    """The text of one ``### title`` section of the report."""
    start = output.index(f"### {title}")
    end = output.find("### ", start + 4)
    return output[start : end if end > 0 else None]


def test_answer_workloads_on_each_kind_of_system(tmp_path: Path) -> None:
    # One system of each kind (ragserve, prototype, Celery): the others run the same code
    # with other arguments, and each system costs ~10 s of CI even at this size.
    systems = ["ragserve-split", "proto-serial"]
    systems += [] if CELERY else ["celery"]
    out = bench(
        "peers.py",
        *("--systems", *systems, "--workloads", "burst", "poisson", "ingress"),
        *TINY,
        *("--serial-n", 2, "--duration", 1, "--loads", 0.5),
        *("--connections", 4, "--ingress-duration", 1),
        *("--charts", tmp_path / "img", "--json", tmp_path / "peers.json"),
        cwd=tmp_path,
    )
    burst = section(out, "4 questions at once")
    for name in systems:
        cells = row(burst, name)
        answered = cells[1].rstrip("*")
        assert answered == ("2" if name == "proto-serial" else "4"), cells
        single, makespan = float(cells[2]), float(cells[3].rstrip("*"))
        assert single > 0.2 and makespan > 0.2, cells  # the mock's ttft at least
        p50, p99 = (float(x) for x in cells[5].split(" / "))
        assert 0 < p50 <= p99, cells
    poisson = section(out, "Poisson arrivals")
    for name in systems:
        cells = row(poisson, name)
        assert cells[1] == "50 %" and float(cells[2]) > 0, cells
        answered, sent = (int(x) for x in cells[3].split(" / "))
        assert answered == sent, cells  # half the capacity: nothing left behind
    if shutil.which("wrk"):
        ingress = section(out, "Ingress")
        for name in {"ragserve-split", "celery"} & set(systems):
            cells = row(ingress, name)
            assert cells[3] == "0" and float(cells[4]) > 0, cells  # no errors, some req/s
    else:
        assert "ragserve-split ingress: wrk is not installed" in out
    assert (tmp_path / "img" / "peers-latency.png").stat().st_size > 10_000
    assert (tmp_path / "img" / "peers-throughput.png").exists()


@pytest.mark.skipif(CELERY is not None, reason=f"Celery peer unavailable: {CELERY}")
def test_queue_workloads_ragserve_and_celery(tmp_path: Path) -> None:
    """Worker SIGKILLed mid-burst and no-op drain: ragserve takes the killed worker's
    jobs over; Celery with ``acks_late`` gets them back after the visibility timeout. (Celery
    with its defaults loses them: that run waits for the whole ``--kill-timeout``, too long
    for a smoke test; the same code path runs here with the other settings.)"""
    out = bench(
        "peers.py",
        *("--systems", "ragserve-split", "celery-acks-late"),
        *("--workloads", "kill", "noop"),
        *TINY,
        *("--ttft", 1.0, "--kill-after", 0.6, "--kill-timeout", 25),
        *("--visibility-timeout", 1, "--noop-n", 40, "--charts", tmp_path / "img"),
        cwd=tmp_path,
    )
    kill = section(out, "A worker SIGKILLed")
    for name in ("ragserve-split", "celery-acks-late"):
        cells = row(kill, name)
        answered, lost = int(cells[2]), int(cells[3])
        assert answered + lost == 4, cells
    assert row(kill, "ragserve-split")[3] == "0"  # taken over after the heartbeat timeout
    noop = section(out, "No-op jobs")
    for name in ("ragserve-split", "celery-acks-late"):
        cells = row(noop, name)
        assert cells[2] == "40" and float(cells[5]) > 0, cells
    assert (tmp_path / "img" / "peers-recovery.png").exists()


def test_job_cost(tmp_path: Path) -> None:
    out = bench(
        "job_cost.py",
        *("--n", 4, "--concurrency", 4, "--repeat", 1, "--idle", 1, "--ttft", 0.2),
        cwd=tmp_path,
    )
    cells = table_rows(out)[2]  # the first run under the header and its rule
    api, worker, total, postgres = (float(c) for c in cells[3:7])
    assert math.isclose(api + worker, total, abs_tol=0.11), cells  # each rounded
    assert total > 0 and postgres > 0, cells
    line = next(x for x in out.splitlines() if x.startswith("database round trips per"))
    per_job = float(line.split(":")[1].split("(")[0])
    assert 5 < per_job < 500, line  # a job cannot be answered without a few statements
    kinds = {c[0] for c in table_rows(out)}
    assert "BEGIN" in kinds or any(k.startswith("WITH") for k in kinds), kinds
