"""Reranking through a real HTTP server (bench/mock_rerank.py in a subprocess): both answer
shapes reorder; a slow or failing reranker leaves the fused order, counted."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from ragserve.kb.types import RetrievedChunk
from ragserve.rag.rerank import HttpReranker, RerankError, parse_scores
from support.processes import ROOT, Proc, child_env

_ANNOUNCEMENT = "mock reranker listening on "


@pytest.fixture(scope="module")
def rerank_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("rerank") / "mock_rerank.log"
    proc = Proc(
        [sys.executable, str(ROOT / "bench" / "mock_rerank.py"), "--port", "0"], child_env(), log
    )
    deadline = time.monotonic() + 30
    while _ANNOUNCEMENT not in proc.log():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            raise AssertionError(f"mock reranker did not start:\n{proc.log()}")
        time.sleep(0.05)
    line = next(line for line in proc.log().splitlines() if _ANNOUNCEMENT in line)
    yield line.split(_ANNOUNCEMENT, 1)[1].strip()
    proc.stop()


def configure(base_url: str, **changes: object) -> None:
    admin = base_url.removesuffix("/v1") + "/admin/config"
    httpx.post(admin, json=changes, timeout=5).raise_for_status()


@pytest.fixture
def mock(rerank_url: str) -> Iterator[str]:
    configure(rerank_url, shape="cohere", delay=0.0, error_rate=0.0, error_status=500)
    yield rerank_url
    configure(rerank_url, shape="cohere", delay=0.0, error_rate=0.0, error_status=500)


def chunks(*texts: str) -> list[RetrievedChunk]:
    return [
        RetrievedChunk(chunk_id=str(i), document_id=str(i), source=f"s{i}", text=t, score=0.5)
        for i, t in enumerate(texts)
    ]


FUSED = chunks(
    "The cafeteria opens at noon.",
    "Parking permits are issued by facilities.",
    "Error E-4471 means the label printer lost its ribbon; reseat the ribbon cable.",
)
QUERY = "What does error E-4471 mean for the label printer?"


@pytest.mark.parametrize("shape", ["cohere", "tei"])
async def test_rerank_reorders_by_the_endpoint_scores(mock: str, shape: str) -> None:
    configure(mock, shape=shape)
    reranker = HttpReranker(mock, model="m", timeout_s=5)
    try:
        best = await reranker.rerank(QUERY, FUSED, top_k=2)
    finally:
        await reranker.aclose()
    assert best[0].chunk_id == "2"  # was last in the fused order
    assert len(best) == 2 and reranker.failures == 0


async def test_rerank_timeout_keeps_fused_order(mock: str) -> None:
    configure(mock, delay=2.0)
    reranker = HttpReranker(mock, timeout_s=0.3)
    try:
        start = time.monotonic()
        best = await reranker.rerank(QUERY, FUSED, top_k=2)
        waited = time.monotonic() - start
    finally:
        await reranker.aclose()
    assert [c.chunk_id for c in best] == ["0", "1"]
    assert reranker.failures == 1
    assert waited < 1.5  # the timeout, not the mock's delay


@pytest.mark.parametrize("status", [500, 503])
async def test_rerank_error_keeps_fused_order(mock: str, status: int) -> None:
    configure(mock, error_rate=1.0, error_status=status)
    reranker = HttpReranker(mock, timeout_s=5)
    try:
        best = await reranker.rerank(QUERY, FUSED, top_k=3)
        again = await reranker.rerank(QUERY, FUSED, top_k=3)
    finally:
        await reranker.aclose()
    assert [c.chunk_id for c in best] == [c.chunk_id for c in again] == ["0", "1", "2"]
    assert reranker.failures == 2


async def test_unreachable_reranker_keeps_fused_order() -> None:
    reranker = HttpReranker("http://127.0.0.1:9/v1", timeout_s=1)  # discard port: refused
    try:
        best = await reranker.rerank(QUERY, FUSED, top_k=1)
    finally:
        await reranker.aclose()
    assert [c.chunk_id for c in best] == ["0"] and reranker.failures == 1


def test_parse_scores_reads_both_shapes_and_rejects_others() -> None:
    cohere = {
        "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]
    }
    assert parse_scores(cohere, 3) == [0.1, 0.9, float("-inf")]  # top_n left one out
    assert parse_scores([{"index": 0, "score": 2.0}, {"index": 1, "score": -1.0}], 2) == [2.0, -1.0]
    for bad in ({"data": []}, [{"index": 5, "score": 1.0}], [{"index": 0}], "nope"):
        with pytest.raises(RerankError):
            parse_scores(bad, 2)
