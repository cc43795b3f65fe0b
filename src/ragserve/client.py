"""HTTP client of the ragserve API: typed calls, typed errors, and resumable event streams.

The CLI's ``ask`` and ``jobs`` commands are plain clients of the HTTP API (they may run on a
laptop against a cluster), so nothing here imports the server side, and nothing here prints:
rendering lives in ``ragserve.cli``. The client is synchronous: a CLI does one thing at a time,
and sync ``httpx`` keeps the code and the tracebacks simple.

Errors are typed so the CLI maps them to exit codes in one place: :class:`ServiceUnreachable`
when nothing listens at the URL (exit 2 with a hint to start ``ragserve serve``),
:class:`ApiError` for a 4xx/5xx answer, :class:`StreamInterrupted` when an event stream could not
be resumed, and :class:`ClientError` (their base) for anything else.

Server-Sent Events are decoded by ``httpx-sse``; :meth:`ApiClient.stream_events` adds what a
job's stream needs on top: JSON data, the end of the stream at a terminal event, and resuming a
dropped connection with the ``Last-Event-ID`` header, which the server honours without loss or
duplicates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, SSEError, connect_sse

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
MAX_RECONNECT_DELAY_S = 5.0


# --------------------------------------------------------------------------- errors


class ClientError(Exception):
    """Base of the errors the API client raises; the CLI catches this one type."""


class ServiceUnreachable(ClientError):
    """Nothing accepts connections at the base URL: the service is not started (or wrong URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"no ragserve service at {url}: start it with `ragserve serve`")


class ApiError(ClientError):
    """The service answered 4xx or 5xx; ``type`` and ``message`` come from its error body."""

    def __init__(self, status: int, type: str, message: str) -> None:
        self.status = status
        self.type = type
        self.message = message
        super().__init__(f"{status} {type}: {message}")


class StreamInterrupted(ClientError):
    """An event stream kept dropping and could not be resumed within the reconnect budget."""


# --------------------------------------------------------------------------- job events


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a job's stream: ``event`` is its type (``status``, ``sources``, ``token``,
    ``done``, ``error``), ``data`` its JSON object, ``id`` its position (the resume point)."""

    event: str
    data: dict[str, Any]
    id: str | None = None

    @classmethod
    def from_sse(cls, sse: ServerSentEvent) -> JobEvent:
        """Decode the JSON object ragserve sends as data; anything else reads as ``{}``, so one
        odd event does not abort an answer that is being printed."""
        try:
            data = json.loads(sse.data)
        except ValueError:
            data = None
        return cls(sse.event, data if isinstance(data, dict) else {}, sse.id or None)

    @property
    def terminal(self) -> bool:
        """Whether the server closes the stream after this event (done, error, cancelled)."""
        return self.event in ("done", "error") or (
            self.event == "status" and self.data.get("status") == "cancelled"
        )


# --------------------------------------------------------------------------- HTTP client


def _api_error(response: httpx.Response) -> ApiError:
    """Build an :class:`ApiError` from ragserve's ``{"error": ...}`` or FastAPI's 422 body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return ApiError(response.status_code, str(err.get("type")), str(err.get("message")))
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        parts = []
        for item in body["detail"]:
            if not isinstance(item, dict):
                continue
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        return ApiError(response.status_code, "validation_error", "; ".join(parts))
    if isinstance(body, dict) and "detail" in body:
        return ApiError(response.status_code, "http_error", str(body["detail"]))
    text = response.text.strip()[:200] or response.reason_phrase
    return ApiError(response.status_code, "http_error", text)


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

    Use it as a context manager, or call :meth:`close`. ``timeout`` applies to ordinary calls;
    event streams use ``stream_read_timeout`` between reads, after which the stream is
    reconnected (a quiet job is not an error, so that reconnect costs no budget).
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 30,
        *,
        max_reconnects: int = 5,
        reconnect_delay_s: float = 0.25,
        stream_read_timeout: float = 60,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_reconnects = max_reconnects
        self.reconnect_delay_s = reconnect_delay_s
        self.stream_read_timeout = stream_read_timeout
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ----------------------------------------------------------------- plain calls

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServiceUnreachable(self.base_url) from exc
        except httpx.TransportError as exc:  # timeout, reset: the CLI prints one line for it
            raise ClientError(f"{method} {self.base_url}{path} failed: {exc!r}") from exc
        if response.status_code >= 400:
            raise _api_error(response)
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
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _json_object(self._request("POST", "/v1/jobs", json=body, headers=headers))

    def ask(
        self,
        query: str,
        collection: str = "default",
        top_k: int = 4,
        *,
        wait_s: float = 30,
        document_scope: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """``POST /v1/ask``: ``(200, job)`` if done within ``wait_s``, else ``(202, accepted)``."""
        body = _job_body(query, collection, top_k, document_scope, filters) | {"wait_s": wait_s}
        timeout = httpx.Timeout(self._timeout, read=max(self._timeout, wait_s + 10))
        response = self._request("POST", "/v1/ask", json=body, timeout=timeout)
        return response.status_code, _json_object(response)

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
        """``POST /v1/jobs/{id}/cancel``: the job body (its terminal status if already over)."""
        return _json_object(self._request("POST", f"/v1/jobs/{_quote(job_id)}/cancel"))

    def retry(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/retry``: re-queue a failed or cancelled job (409 otherwise)."""
        return _json_object(self._request("POST", f"/v1/jobs/{_quote(job_id)}/retry"))

    def upload_files(
        self, collection: str, paths: Sequence[Path], metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``POST /v1/collections/{name}/documents`` (multipart): one ingest job for all."""
        files = [("files", (path.name, path.read_bytes())) for path in paths]
        data = {"metadata": json.dumps(metadata)} if metadata else None
        path = f"/v1/collections/{_quote(collection)}/documents"
        return _json_object(self._request("POST", path, files=files, data=data))

    # ----------------------------------------------------------------- events

    def stream_events(self, job_id: str, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """Yield a job's events until a terminal one, resuming dropped connections.

        A drop (reset, truncated body, clean end before a terminal event while the job is not
        over, 5xx such as a draining replica) reconnects with ``Last-Event-ID`` after a growing
        delay, or after the server's ``retry:`` hint. The budget of ``max_reconnects`` is per
        run of failures: any received event refills it, so a long answer over a flaky network
        still finishes. A connect error before anything was received means no service:
        :class:`ServiceUnreachable`, at once.
        """
        failures = 0
        connected_once = False
        retry_ms: int | None = None
        while True:
            try:
                for sse in self._open_stream(job_id, last_event_id):
                    connected_once = True
                    # The id and retry fields count even on an event without data, which is
                    # not dispatched (WHATWG rules); httpx-sse yields it for those fields. An
                    # empty id keeps the last one: a resume from the start would repeat events.
                    if sse.id:
                        last_event_id = sse.id
                    if sse.retry is not None:
                        retry_ms = sse.retry
                    if not sse.data:
                        continue
                    failures = 0
                    event = JobEvent.from_sse(sse)
                    yield event
                    if event.terminal:
                        return
                connected_once = True
                if self._finished(job_id):
                    return  # resumed after the terminal event: the server has nothing more
            except ServiceUnreachable:
                if not connected_once:
                    raise
            except httpx.ReadTimeout:
                continue  # quiet, not broken: reconnect at no cost
            except ApiError as exc:
                if exc.status < 500:
                    raise
            except SSEError as exc:  # a 200 that is not an event stream: wrong URL, no retry
                raise ClientError(f"events of job {job_id}: {exc}") from exc
            except httpx.TransportError:
                pass  # dropped mid-stream (reset, incomplete chunked body, ...)
            failures += 1
            if failures > self.max_reconnects:
                raise StreamInterrupted(
                    f"event stream of job {job_id} dropped {failures} times in a row"
                )
            time.sleep(self._reconnect_delay(retry_ms, failures))

    def _finished(self, job_id: str) -> bool:
        """After a clean end of stream without a terminal event: is the job over anyway?"""
        try:
            return self.get_job(job_id).get("status") in TERMINAL_STATUSES
        except ClientError:
            return False  # cannot tell: reconnect, which costs budget

    def _open_stream(self, job_id: str, last_event_id: str | None) -> Iterator[ServerSentEvent]:
        """One connection's worth of events; raises on a drop, returns on end of body.

        An event cut off by the drop is never yielded (it has no blank line yet), so the
        resume from the last yielded id neither loses nor repeats it.
        """
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        timeout = httpx.Timeout(self._timeout, read=self.stream_read_timeout)
        path = f"/v1/jobs/{_quote(job_id)}/events"
        try:
            with connect_sse(self._http, "GET", path, headers=headers, timeout=timeout) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise _api_error(source.response)
                yield from source.iter_sse()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServiceUnreachable(self.base_url) from exc

    def _reconnect_delay(self, retry_ms: int | None, failures: int) -> float:
        """The server's ``retry:`` hint if it sent one, else exponential; capped."""
        if retry_ms is not None:
            return min(retry_ms / 1000, MAX_RECONNECT_DELAY_S)
        return min(self.reconnect_delay_s * 2.0 ** (failures - 1), MAX_RECONNECT_DELAY_S)


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
