"""ragserve from inside a LangChain chain: a retriever over a collection, and a Runnable that
asks a running ragserve service (docs/OPENAI.md, "From a LangChain chain").

- :class:`RagserveRetriever` is a ``BaseRetriever``: ``RagserveRetriever.over_http(url,
  collection)`` searches a running service (``POST /v1/collections/{name}/search``);
  ``RagserveRetriever.in_process(retriever, collection)`` searches in this process with a
  :class:`ragserve.rag.retrieval.Retriever` (``services.retriever`` of ``open_services``).
  Each passage becomes a ``Document``: ``page_content`` is its text; ``metadata`` is the
  document's own metadata plus ``source``, ``document_id``, ``chunk_id``, ``score`` and
  ``location`` (these names win over the document's own).
- :class:`RagserveRunnable` submits each input as a job (``POST /v1/jobs``) to a running
  service: ``invoke`` returns the job's result (``{"answer", "sources", "job_id"}``);
  ``stream`` and ``astream`` yield the answer's text as its tokens arrive. The job is an
  ordinary one: cached, coalesced, retried, visible in ``/v1/jobs``.

Over HTTP both take ``api_key`` (sent as ``Authorization: Bearer``; its tenant's collections
are searched and asked). In-process, ``tenant`` names whose collection the retriever searches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any, Self, TypeAlias

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, Field, SecretStr, model_validator

from ragserve.answer_stream import StreamedAnswer
from ragserve.client import ApiClient, ClientError
from ragserve.names import DEFAULT_TENANT
from ragserve.rag.retrieval import Retriever

RagserveInput: TypeAlias = str | dict[str, Any]
"""A question, or ``{"query", "collection", "top_k", "document_scope", "filters"}``."""

_METADATA_KEYS = ("source", "document_id", "chunk_id", "score", "location")
_REQUEST_KEYS = ("query", "collection", "top_k", "document_scope", "filters")


def document_of(source: dict[str, Any]) -> Document:
    """A passage (a job's ``result.sources`` entry, or a search result) as a ``Document``."""
    metadata = {**(source.get("metadata") or {}), **{k: source.get(k) for k in _METADATA_KEYS}}
    return Document(
        page_content=str(source.get("text") or ""), metadata=metadata, id=source.get("chunk_id")
    )


class RagserveRetriever(BaseRetriever):
    """The passages of a ragserve collection that best match a query, as ``Document``s.

    Over HTTP it works sync and async. In-process it is async only (``ainvoke``, ``abatch``,
    or inside an async chain): the database pool belongs to the event loop it was opened on.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    collection: str = "default"
    top_k: int = Field(default=4, ge=1, le=100)
    document_scope: list[str] | None = None
    filters: dict[str, Any] | None = None
    base_url: str | None = Field(default=None, description="A running service (over HTTP).")
    retriever: Retriever | None = Field(default=None, description="Search in this process.")
    timeout_s: float = Field(default=30.0, gt=0)
    api_key: SecretStr | None = Field(default=None, description="Over HTTP: the API key.")
    tenant: str = Field(default=DEFAULT_TENANT, description="In-process: whose collection.")

    @model_validator(mode="after")
    def _one_backend(self) -> Self:
        if (self.base_url is None) == (self.retriever is None):
            raise ValueError("give exactly one of base_url (over HTTP) or retriever (in-process)")
        return self

    @classmethod
    def over_http(cls, base_url: str, collection: str = "default", **options: Any) -> Self:
        return cls(base_url=base_url, collection=collection, **options)

    @classmethod
    def in_process(cls, retriever: Retriever, collection: str = "default", **options: Any) -> Self:
        return cls(retriever=retriever, collection=collection, **options)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        if self.base_url is None:
            raise ClientError(
                "an in-process RagserveRetriever searches on its event loop:"
                " use ainvoke (or an async chain)"
            )
        key = self.api_key.get_secret_value() if self.api_key is not None else None
        with ApiClient(self.base_url, timeout=self.timeout_s, api_key=key) as client:
            found = client.search(
                query,
                self.collection,
                self.top_k,
                document_scope=self.document_scope,
                filters=self.filters,
            )
        return [document_of(source) for source in found]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        if self.retriever is None:
            return await asyncio.to_thread(
                self._get_relevant_documents, query, run_manager=run_manager.get_sync()
            )
        chunks = await self.retriever.retrieve(
            query,
            tenant=self.tenant,
            collection=self.collection,
            top_k=self.top_k,
            document_scope=self.document_scope,
            filters=self.filters,
        )
        return [document_of(chunk.as_source()) for chunk in chunks]


class RagserveJobError(ClientError):
    """The job ended without an answer (failed or cancelled)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.job_id = str(job.get("job_id"))
        self.status = str(job.get("status"))
        error = job.get("error") or {}
        why = f": {error.get('type')}: {error.get('message')}" if error else ""
        super().__init__(f"job {self.job_id} {self.status}{why}")


class RagserveRunnable(Runnable[RagserveInput, Any]):
    """Asks a running ragserve service: each input becomes a job (``POST /v1/jobs``).

    ``invoke`` returns the job's result dict (``answer``, ``sources``, ``job_id``);
    ``stream``/``astream`` yield the answer's text pieces (str) as the tokens arrive. A failed
    or cancelled job raises :class:`RagserveJobError`. Resumes dropped event streams and
    retries submissions safely (``ragserve.client``).
    """

    name = "ragserve"

    def __init__(
        self,
        base_url: str,
        collection: str = "default",
        top_k: int = 4,
        *,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
        timeout_s: float = 30.0,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self.defaults: dict[str, Any] = {
            "collection": collection,
            "top_k": top_k,
            "document_scope": list(document_scope) if document_scope is not None else None,
            "filters": filters,
        }
        self.timeout_s = timeout_s

    def _request(self, input: RagserveInput) -> dict[str, Any]:
        given = {"query": input} if isinstance(input, str) else dict(input)
        unknown = set(given) - set(_REQUEST_KEYS)
        if unknown or not isinstance(given.get("query"), str):
            raise ClientError(
                f"input must be a question or a dict with 'query' (and {_REQUEST_KEYS[1:]});"
                f" got keys {sorted(given)}"
            )
        return {**self.defaults, **given}

    def _client(self) -> ApiClient:
        return ApiClient(self.base_url, timeout=self.timeout_s, api_key=self._api_key)

    def _submit(self, client: ApiClient, input: RagserveInput) -> str:
        request = self._request(input)
        query = request.pop("query")
        return str(client.submit(query, **request)["job_id"])

    def _answer(self, input: RagserveInput) -> dict[str, Any]:
        with self._client() as client:
            job_id = self._submit(client, input)
            for event in client.stream_events(job_id):
                if event.terminal:
                    break
            return _result(client.get_job(job_id))

    def _pieces(self, input: RagserveInput) -> Generator[str, None, None]:
        with self._client() as client:
            job_id = self._submit(client, input)
            shown = StreamedAnswer()
            for event in client.stream_events(job_id):
                if event.event == "token":
                    attempt = int(event.data.get("attempt") or 0)
                    if text := shown.token(str(event.data.get("text") or ""), attempt):
                        yield text
                elif event.terminal:
                    break
            result = _result(client.get_job(job_id))
            if rest := shown.finish(str(result.get("answer") or "")):
                yield rest

    def _transform(self, inputs: Iterator[RagserveInput]) -> Iterator[str]:
        for input in inputs:
            yield from self._pieces(input)

    async def _atransform(self, inputs: AsyncIterator[RagserveInput]) -> AsyncIterator[str]:
        async for input in inputs:
            pieces = self._pieces(input)
            try:
                # The client is synchronous: each next piece is read in a thread.
                while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                    yield piece
            finally:
                await asyncio.to_thread(pieces.close)

    def invoke(
        self, input: RagserveInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call_with_config(self._answer, input, config)
        return result

    async def ainvoke(
        self, input: RagserveInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self.invoke, input, config)

    def stream(
        self, input: RagserveInput, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> Iterator[str]:
        yield from self._transform_stream_with_config(iter([input]), self._transform, config)

    async def astream(
        self, input: RagserveInput, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[str]:
        async def one() -> AsyncIterator[RagserveInput]:
            yield input

        async for piece in self._atransform_stream_with_config(one(), self._atransform, config):
            yield piece


def _result(job: dict[str, Any]) -> dict[str, Any]:
    if job.get("status") != "succeeded" or not isinstance(job.get("result"), dict):
        raise RagserveJobError(job)
    result: dict[str, Any] = job["result"]
    return {**result, "job_id": job["job_id"]}
