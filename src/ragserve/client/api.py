"""``ApiClient``: typed calls to the ragserve HTTP API, retried safely, and resumable streams.

Every call is retried on a connection failure, ``502``, ``503`` or ``504`` until the client's
:class:`~ragserve.client.retry.RetryPolicy` deadline (30 s by default); see that module for the
waits. What makes a retried ``POST`` safe:

- Submissions (``submit``, ``ask``, ``upload_files``) carry an ``Idempotency-Key``: the
  caller's, or a fresh uuid4 per call, the same on every try. The server maps a repeated key
  with the same body to the same job, so a try that went through before its answer was lost
  does not make a second job. (A keyed submission gets a job of its own: it does not coalesce
  onto an identical question in flight from someone else. Cached answers still apply.)
- ``cancel`` is idempotent by nature: cancelling a job that is already over answers ``200``
  with the job as it is, so a repeated cancel returns the cancelled job.
- ``retry`` is not: once a first try re-queued the job, a repeat answers ``409`` (the job is
  ``queued`` or ``running``). When an earlier try of the same call may have reached the server,
  such a ``409`` means the job is running again, which is what the caller asked for: the client
  returns the job. A ``409`` on a first try, or for a job in any other state, is raised.

The key is sent with ``cancel`` and ``retry`` too (the server ignores it there), so that logs
show one key per logical call.

The client is synchronous: a CLI does one thing at a time, and sync ``httpx`` keeps the code
and the tracebacks simple. Server-Sent Events are decoded by ``httpx-sse``;
:meth:`ApiClient.stream_events` adds what a job's stream needs on top.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, SSEError, connect_sse

from ragserve.client.errors import (
    ApiError,
    ClientError,
    ServiceUnreachable,
    StreamInterrupted,
    TransportFailure,
    api_error,
)
from ragserve.client.events import TERMINAL_STATUSES, JobEvent
from ragserve.client.retry import (
    RETRYABLE_TRANSPORT_ERRORS,
    Retrying,
    RetryPolicy,
    retryable,
)

# Per-try extra arguments of a request whose body must be built again for each try (uploads
# reopen their files); the ExitStack closes what a try opened.
BodyFactory = Callable[[ExitStack], dict[str, Any]]


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The response body, which every ragserve endpoint makes a JSON object."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        request = response.request
        raise ClientError(f"{request.method} {request.url}: the answer is not a JSON object")
    return body


class ApiClient:
    """Typed calls to the ragserve HTTP API; one ``httpx.Client`` (connection pool) per instance.

    Use it as a context manager, or call :meth:`close`. ``timeout`` applies to each try of an
    ordinary call; ``retry`` bounds the tries (:class:`RetryPolicy`: deadline, backoff, how
    long refused connects to a service never reached are retried). Event streams use
    ``stream_read_timeout`` between reads, after which the stream is reconnected (a quiet job
    is not an error, so that reconnect costs nothing).
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 30,
        *,
        retry: RetryPolicy | None = None,
        stream_read_timeout: float = 60,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_policy = retry or RetryPolicy()
        self.stream_read_timeout = stream_read_timeout
        self._timeout = timeout
        # ``api_key``: sent on every request (RAGSERVE_AUTH=api_key on the service).
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
        self._reached = False  # any answer from the service yet (see RetryPolicy)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _retrying(self) -> Retrying:
        return Retrying(self.retry_policy, reached=lambda: self._reached)

    # ----------------------------------------------------------------- plain calls

    def _request(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str | None = None,
        body: BodyFactory | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One logical call: tries until a final answer or the retry deadline.

        A ``POST`` carries ``idempotency_key`` (a fresh one when ``None``) on every try. An
        error raised after a try whose outcome is unknown (cut connection, 502/503/504) has
        ``earlier_try_uncertain`` set, so a caller can tell "already done" from "refused".
        """
        if method == "POST":
            key = idempotency_key or str(uuid.uuid4())
            kwargs["headers"] = {**kwargs.get("headers", {}), "Idempotency-Key": key}
        retrying = self._retrying()
        uncertain = False
        while True:
            try:
                with ExitStack() as stack:
                    extra = body(stack) if body is not None else {}
                    return self._send(method, path, **kwargs, **extra)
            except ClientError as exc:
                if isinstance(exc, ApiError):
                    exc.earlier_try_uncertain = uncertain
                retrying.wait_or_raise(exc, exc.retry_after if isinstance(exc, ApiError) else None)
                uncertain = uncertain or not isinstance(exc, ServiceUnreachable)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One try; every failure becomes a typed error (see ``retry.retryable``)."""
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServiceUnreachable(self.base_url) from exc
        except RETRYABLE_TRANSPORT_ERRORS as exc:  # sent, then reset/cut/timed out
            raise TransportFailure(f"{method} {self.base_url}{path} failed: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ClientError(f"{method} {self.base_url}{path} failed: {exc!r}") from exc
        self._reached = True
        if response.status_code >= 400:
            raise api_error(response)
        return response

    def submit(
        self,
        query: str,
        collection: str = "default",
        top_k: int = 4,
        *,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/jobs``: queue a question; returns ``{"job_id", "status", ...}`` at once."""
        body = _job_body(query, collection, top_k, document_scope, filters)
        response = self._request("POST", "/v1/jobs", json=body, idempotency_key=idempotency_key)
        return _json_object(response)

    def ask(
        self,
        query: str,
        collection: str = "default",
        top_k: int = 4,
        *,
        wait_s: float = 30,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """``POST /v1/ask``: ``(200, job)`` if done within ``wait_s``, else ``(202, accepted)``.

        A retried try finds the same job (same key) and waits for it again.
        """
        body = _job_body(query, collection, top_k, document_scope, filters) | {"wait_s": wait_s}
        timeout = httpx.Timeout(self._timeout, read=max(self._timeout, wait_s + 10))
        response = self._request(
            "POST", "/v1/ask", json=body, timeout=timeout, idempotency_key=idempotency_key
        )
        return response.status_code, _json_object(response)

    def search(
        self,
        query: str,
        collection: str = "default",
        top_k: int = 4,
        *,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """``POST /v1/collections/{name}/search``: the best passages, best first (each in the
        shape of a job's ``result.sources``). Retrieval only: no job, no answer."""
        body = _job_body(query, collection, top_k, document_scope, filters)
        del body["collection"]
        path = f"/v1/collections/{_quote(collection)}/search"
        response = self._request("POST", path, json=body)
        results = _json_object(response).get("results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise ClientError(f"POST {response.request.url}: 'results' is not a list of objects")
        return results

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``: the job body (404 raises :class:`ApiError`)."""
        return _json_object(self._request("GET", f"/v1/jobs/{_quote(job_id)}"))

    def list_jobs(self, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """``GET /v1/jobs``: newest first, optionally only one status."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        response = self._request("GET", "/v1/jobs", params=params)
        jobs = _json_object(response).get("jobs")
        if not isinstance(jobs, list) or not all(isinstance(job, dict) for job in jobs):
            raise ClientError(f"GET {response.request.url}: 'jobs' is not a list of objects")
        return jobs

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/cancel``: the job body (its terminal status if already over),
        so a repeated cancel answers like the first one."""
        return _json_object(self._request("POST", f"/v1/jobs/{_quote(job_id)}/cancel"))

    def retry(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/retry``: re-queue a failed or cancelled job (409 otherwise).

        If a try was cut off (or got 502/503/504) and a later try gets ``409`` while the job is
        ``queued`` or ``running``, the cut-off try most likely re-queued it: the job is returned
        as if that try had answered. (Someone else's retry in between reads the same, and is
        just as good for the caller: the job runs again, once.)
        """
        try:
            return _json_object(self._request("POST", f"/v1/jobs/{_quote(job_id)}/retry"))
        except ApiError as exc:
            if exc.status != 409 or not exc.earlier_try_uncertain:
                raise
            job = self.get_job(job_id)
            if job.get("status") not in ("queued", "running"):
                raise
            return job

    def upload_files(
        self,
        collection: str,
        paths: Sequence[Path],
        metadata: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/collections/{name}/documents`` (multipart): one ingest job for all.

        Each try reopens the files and ``httpx`` streams them in chunks, so a retry re-sends
        them while memory stays bounded whatever their size (the server holds an upload in
        memory anyway, up to its limit). A file changed between two tries makes a different
        body under the same key: the server answers ``409``, and nothing is ingested twice.
        """
        data = {"metadata": json.dumps(metadata)} if metadata else None

        def files(stack: ExitStack) -> dict[str, Any]:
            opened = [("files", (p.name, stack.enter_context(p.open("rb")))) for p in paths]
            return {"files": opened}

        path = f"/v1/collections/{_quote(collection)}/documents"
        response = self._request(
            "POST", path, data=data, body=files, idempotency_key=idempotency_key
        )
        return _json_object(response)

    # ----------------------------------------------------------------- events

    def stream_events(self, job_id: str, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """Yield a job's events until a terminal one, resuming dropped connections.

        A drop (reset, truncated body, clean end before a terminal event while the job is not
        over, a refused connect, ``502``/``503``/``504`` such as a draining replica or a load
        balancer between two) reconnects with ``Last-Event-ID``, so nothing is lost or repeated,
        after the policy's backoff, at least the server's ``retry:`` or ``Retry-After`` hint.
        One run of failed reconnects is bounded by the retry deadline; any event received
        starts a fresh run, so a long answer over a flaky network still finishes. Giving up
        raises :class:`StreamInterrupted` (:class:`ServiceUnreachable` if the service was never
        reached); a 4xx or a body that is not an event stream is raised at once.
        """
        retrying: Retrying | None = None
        retry_ms: int | None = None
        job_over = False
        while True:
            try:
                for sse in self._open_stream(job_id, last_event_id):
                    # The id and retry fields count even on an event without data, which is
                    # not dispatched (WHATWG rules); httpx-sse yields it for those fields. An
                    # empty id keeps the last one: a resume from the start would repeat events.
                    if sse.id:
                        last_event_id = sse.id
                    if sse.retry is not None:
                        retry_ms = sse.retry
                    if not sse.data:
                        continue
                    retrying = None
                    event = JobEvent.from_sse(sse)
                    yield event
                    if event.terminal:
                        return
                if job_over:
                    return  # read again after the job ended: the server has nothing more
                if self._finished(job_id):
                    # The job ended while this stream was cut (a draining replica ends streams
                    # without their final event): read once more from Last-Event-ID, which
                    # brings the final event, or nothing if it was already delivered.
                    job_over = True
                    continue
                error: ClientError = TransportFailure(
                    f"event stream of job {job_id} ended before its last event"
                )
            except _QuietStream:
                continue  # quiet, not broken: reconnect at no cost
            except SSEError as exc:  # a 200 that is not an event stream: wrong URL, no retry
                raise ClientError(f"events of job {job_id}: {exc}") from exc
            except ClientError as exc:
                error = exc
            retrying = retrying or self._retrying()
            hint = error.retry_after if isinstance(error, ApiError) else None
            if hint is None and retry_ms is not None:
                hint = retry_ms / 1000
            try:
                retrying.wait_or_raise(error, hint)
            except ClientError as exc:
                if not retryable(exc) or (
                    isinstance(exc, ServiceUnreachable) and not self._reached
                ):
                    raise
                raise StreamInterrupted(
                    f"event stream of job {job_id} could not be resumed"
                    f" ({retrying.failures} failures in a row): {exc}"
                ) from exc

    def _finished(self, job_id: str) -> bool:
        """After a clean end of stream without a terminal event: is the job over anyway?"""
        try:
            return self.get_job(job_id).get("status") in TERMINAL_STATUSES
        except ClientError:
            return False  # cannot tell: reconnect, which counts as a failure

    def _open_stream(self, job_id: str, last_event_id: str | None) -> Iterator[ServerSentEvent]:
        """One connection's worth of events; raises a typed error on a drop, returns on end.

        An event cut off by the drop is never yielded (it has no blank line yet), so the
        resume from the last yielded id neither loses nor repeats it. A read timeout once the
        stream is open is :class:`_QuietStream`; before the answer came it is a failure.
        """
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        timeout = httpx.Timeout(self._timeout, read=self.stream_read_timeout)
        path = f"/v1/jobs/{_quote(job_id)}/events"
        opened = False
        try:
            with connect_sse(self._http, "GET", path, headers=headers, timeout=timeout) as source:
                opened = True
                self._reached = True
                if source.response.status_code >= 400:
                    source.response.read()
                    raise api_error(source.response)
                yield from source.iter_sse()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServiceUnreachable(self.base_url) from exc
        except httpx.ReadTimeout as exc:
            if opened:
                raise _QuietStream from exc
            raise TransportFailure(f"GET {self.base_url}{path} timed out: {exc!r}") from exc
        except RETRYABLE_TRANSPORT_ERRORS as exc:
            raise TransportFailure(f"GET {self.base_url}{path} dropped: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ClientError(f"GET {self.base_url}{path} failed: {exc!r}") from exc


class _QuietStream(Exception):
    """No bytes for ``stream_read_timeout`` on an open stream: reconnect, it is no failure."""


def _quote(job_id: str) -> str:
    """A job id as one path segment, whatever the user typed."""
    return quote(job_id, safe="")


def _job_body(
    query: str,
    collection: str,
    top_k: int,
    document_scope: Sequence[str] | None,
    filters: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "query": query,
        "collection": collection,
        "top_k": top_k,
        "document_scope": list(document_scope) if document_scope is not None else None,
        "filters": filters,
    }
