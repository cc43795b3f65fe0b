"""``ragserve.langchain``: the retriever in-process and over HTTP, the Runnable that asks a
running service (its tokens streamed), used inside an ordinary LCEL chain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from served import Served

from ragserve.db.pool import Database
from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.store import KnowledgeStore
from ragserve.langchain import RagserveJobError, RagserveRetriever, RagserveRunnable
from ragserve.rag.retrieval import Retriever

LEAVE = "Full-time employees get 23 days of paid annual leave. [1]"


@pytest.fixture
async def local_retriever(served: Served, embedder: LocalEmbedder) -> AsyncIterator[Retriever]:
    """A retriever in this process, on the service's database."""
    db = Database(served.database_url, max_size=2)
    await db.open(migrate=False)
    yield Retriever(KnowledgeStore(db), embedder)
    await db.close()


def check_wifi_documents(documents: list[Document]) -> None:
    top = documents[0]
    assert top.page_content == "The guest Wi-Fi network is called Lumen-Guest."
    assert top.metadata["source"] == "wifi.md"
    assert {"document_id", "chunk_id", "score", "location"} <= set(top.metadata)
    assert top.id == top.metadata["chunk_id"]


async def test_retriever_in_process(local_retriever: Retriever) -> None:
    retriever = RagserveRetriever.in_process(local_retriever, "handbook", top_k=2)
    documents = await retriever.ainvoke("guest wifi name")
    assert len(documents) == 2
    check_wifi_documents(list(documents))
    with pytest.raises(Exception, match="ainvoke"):
        retriever.invoke("guest wifi name")


async def test_retriever_over_http(served: Served) -> None:
    retriever = RagserveRetriever.over_http(served.url, "handbook", top_k=3)
    documents = retriever.invoke("guest wifi name")
    assert len(documents) == 3
    check_wifi_documents(list(documents))
    check_wifi_documents(list(await retriever.ainvoke("guest wifi name")))
    with pytest.raises(ValueError, match="exactly one"):
        RagserveRetriever(collection="handbook")


async def test_runnable_streams_tokens_and_returns_the_result(served: Served) -> None:
    ragserve = RagserveRunnable(served.url, "handbook")
    question = "How many days of annual leave do full-time staff get?"
    pieces = [piece async for piece in ragserve.astream(question)]
    assert "".join(pieces) == LEAVE
    result = await ragserve.ainvoke({"query": question})
    assert result["answer"] == LEAVE and result["sources"][0]["source"] == "leave.md"
    assert served.wait_job(result["job_id"])["query"] == question
    assert "".join(ragserve.stream(question)) == LEAVE
    # Inside an existing chain, as any Runnable.
    chain = ragserve | RunnableLambda(lambda r: r["answer"].upper())
    assert chain.invoke(question) == LEAVE.upper()
    with pytest.raises(RagserveJobError):
        RagserveRunnable(served.url, "no-such-collection").invoke(question)
