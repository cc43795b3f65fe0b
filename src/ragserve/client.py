"""HTTP client of the ragserve API, and the terminal rendering the CLI builds on it.

The CLI's ``ask`` and ``jobs`` commands are plain clients of the HTTP API (they may run on a
laptop against a cluster), so everything they need lives here and nothing here imports the
server side. The client is synchronous: a CLI does one thing at a time, and sync ``httpx`` keeps
the code and the tracebacks simple.

Errors are typed so the CLI maps them to exit codes in one place: :class:`ServiceUnreachable`
when nothing listens at the URL (exit 2 with a hint to start ``ragserve serve``),
:class:`ApiError` for a 4xx/5xx answer, :class:`StreamInterrupted` when an event stream could not
be resumed.

Server-Sent Events are parsed by :class:`SseParser` (the WHATWG ``text/event-stream`` rules:
``LF``, ``CRLF`` or ``CR`` line ends, ``:`` comments, multi-line ``data``, an ``id`` that carries
over to later events). :meth:`ApiClient.stream_events` resumes a dropped stream with the
``Last-Event-ID`` header, which the server honours without loss or duplicates.
"""

from __future__ import annotations

import codecs
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
_STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


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


# --------------------------------------------------------------------------- SSE parsing


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched Server-Sent Event. ``id`` is the last id seen so far (it carries over)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry_ms: int | None = None

    def json(self) -> Any:
        """The ``data`` field decoded as JSON (ragserve always sends JSON objects)."""
        return json.loads(self.data)


_LINE_END = re.compile(r"\r\n|\r|\n")


class SseParser:
    """Incremental ``text/event-stream`` parser: feed it bytes as they arrive, get events.

    Chunks may split anywhere, even inside a UTF-8 character or between the ``CR`` and ``LF``
    of a line end, because network reads do. An event without ``data`` is not dispatched and an
    unterminated event at end of stream is discarded, as the spec says: a half-received event
    is re-sent after a resume, so dropping it is what avoids duplicates.
    """

    def __init__(self, last_event_id: str | None = None, retry_ms: int | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._at_start = True
        self._data: list[str] = []
        self._event = ""
        self.last_event_id = last_event_id
        self.retry_ms = retry_ms

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse one chunk of the stream; returns the events it completed (often none)."""
        text = self._decoder.decode(chunk)
        if self._at_start and text:
            self._at_start = False
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text:
            self._skip_lf = False
            text = text.removeprefix("\n")
        self._buffer += text
        events: list[SseEvent] = []
        pos = 0
        for match in _LINE_END.finditer(self._buffer):
            if match.group() == "\r" and match.end() == len(self._buffer):
                self._skip_lf = True
            event = self._line(self._buffer[pos : match.start()])
            if event is not None:
                events.append(event)
            pos = match.end()
        self._buffer = self._buffer[pos:]
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment, used as keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseEvent(
            event=event or "message",
            data="\n".join(data),
            id=self.last_event_id,
            retry_ms=self.retry_ms,
        )


def is_terminal_event(event: SseEvent) -> bool:
    """Whether the server closes a job's stream after this event (done, error, cancelled)."""
    if event.event in ("done", "error"):
        return True
    if event.event == "status":
        try:
            return event.json().get("status") == "cancelled"
        except (ValueError, AttributeError):
            return False
    return False


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
        return self._request("POST", "/v1/jobs", json=body, headers=headers).json()

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
        return response.status_code, response.json()

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``: the job body (404 raises :class:`ApiError`)."""
        return self._request("GET", f"/v1/jobs/{_quote(job_id)}").json()

    def list_jobs(self, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """``GET /v1/jobs``: newest first, optionally only one status."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._request("GET", "/v1/jobs", params=params).json()["jobs"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/cancel``: the job body (its terminal status if already over)."""
        return self._request("POST", f"/v1/jobs/{_quote(job_id)}/cancel").json()

    def retry(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/retry``: re-queue a failed or cancelled job (409 otherwise)."""
        return self._request("POST", f"/v1/jobs/{_quote(job_id)}/retry").json()

    def upload_files(
        self, collection: str, paths: Sequence[Path], metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``POST /v1/collections/{name}/documents`` (multipart): one ingest job for all."""
        files = [("files", (path.name, path.read_bytes())) for path in paths]
        data = {"metadata": json.dumps(metadata)} if metadata else None
        return self._request(
            "POST", f"/v1/collections/{_quote(collection)}/documents", files=files, data=data
        ).json()

    # ----------------------------------------------------------------- events

    def stream_events(self, job_id: str, last_event_id: str | None = None) -> Iterator[SseEvent]:
        """Yield a job's events until a terminal one, resuming dropped connections.

        A drop (reset, truncated body, clean end before a terminal event while the job is not
        over, 5xx such as a draining replica) reconnects with ``Last-Event-ID`` after a growing
        delay. The budget of ``max_reconnects`` is per run of failures: any received event
        refills it, so a long answer over a flaky network still finishes. A connect error before
        anything was received means no service: :class:`ServiceUnreachable`, at once.
        """
        failures = 0
        connected_once = False
        retry_ms: int | None = None
        while True:
            parser = SseParser(last_event_id, retry_ms=retry_ms)
            try:
                for event in self._open_stream(job_id, parser):
                    connected_once = True
                    failures = 0
                    last_event_id = parser.last_event_id
                    yield event
                    if is_terminal_event(event):
                        return
                connected_once = True
                last_event_id = parser.last_event_id
                if self._finished(job_id):
                    return  # resumed after the terminal event: the server has nothing more
            except ServiceUnreachable:
                if not connected_once:
                    raise
            except httpx.ReadTimeout:
                retry_ms = parser.retry_ms
                continue  # quiet, not broken: reconnect at no cost
            except ApiError as exc:
                if exc.status < 500:
                    raise
            except httpx.TransportError:
                pass  # dropped mid-stream (reset, incomplete chunked body, ...)
            retry_ms = parser.retry_ms
            failures += 1
            if failures > self.max_reconnects:
                raise StreamInterrupted(
                    f"event stream of job {job_id} dropped {failures} times in a row"
                )
            time.sleep(self._reconnect_delay(parser, failures))

    def _finished(self, job_id: str) -> bool:
        """After a clean end of stream without a terminal event: is the job over anyway?"""
        try:
            return self.get_job(job_id).get("status") in TERMINAL_STATUSES
        except ClientError:
            return False  # cannot tell: reconnect, which costs budget

    def _open_stream(self, job_id: str, parser: SseParser) -> Iterator[SseEvent]:
        """One connection's worth of events; raises on a drop, returns on end of body."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if parser.last_event_id is not None:
            headers["Last-Event-ID"] = parser.last_event_id
        timeout = httpx.Timeout(self._timeout, read=self.stream_read_timeout)
        try:
            with self._http.stream(
                "GET", f"/v1/jobs/{_quote(job_id)}/events", headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                for chunk in response.iter_bytes():
                    yield from parser.feed(chunk)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServiceUnreachable(self.base_url) from exc

    def _reconnect_delay(self, parser: SseParser, failures: int) -> float:
        """The server's ``retry:`` hint if it sent one, else exponential; capped at 5 s."""
        if parser.retry_ms is not None:
            return min(parser.retry_ms / 1000, 5.0)
        return min(self.reconnect_delay_s * 2 ** (failures - 1), 5.0)


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


# --------------------------------------------------------------------------- rendering


def stream_answer(client: ApiClient, job_id: str, out: Console) -> dict[str, Any]:
    """Print a job's answer token by token as it is generated; return the final job body.

    The final body is fetched with a GET after the stream ends, so the caller gets the same
    shape as ``jobs show`` (sources, timings, error) whatever the stream carried.
    """
    printer = _AnswerPrinter(out)
    for event in client.stream_events(job_id):
        printer.handle(event)
    printer.finish()
    return client.get_job(job_id)


class _AnswerPrinter:
    """What :func:`stream_answer` has shown so far, so a retry or a cached answer prints right.

    A ``running`` status (or any event) with a higher attempt means a retry started and the
    answer restarts: a notice is printed and the new attempt's tokens follow on a fresh line;
    events of an older attempt that arrive late are ignored. If no token was streamed (a cached
    answer, or a custom Runnable that does not stream), the answer is printed from ``done``.
    """

    def __init__(self, out: Console) -> None:
        self.out = out
        self.attempt = 0
        self.printed = False  # tokens of the current attempt are on the current line

    def handle(self, event: SseEvent) -> None:
        data = _event_data(event)
        if event.event in ("status", "sources", "token") and not self._current(data):
            return
        if event.event == "token":
            self._write(str(data.get("text", "")), end="")
            self.printed = True
        elif event.event == "done":
            answer = (data.get("result") or {}).get("answer")
            if answer and not self.printed:
                self._write(str(answer))
        elif event.event == "error":
            self.finish()
            self.out.print(
                f"[red]failed:[/red] {data.get('type')}: {data.get('message')}", highlight=False
            )
        elif event.event == "status" and data.get("status") == "cancelled":
            self.finish()
            self.out.print("[magenta]cancelled[/magenta]")

    def _current(self, data: dict[str, Any]) -> bool:
        """Track the attempt; False for an event of an attempt older than the current one."""
        attempt = data.get("attempt")
        if not isinstance(attempt, int) or attempt == self.attempt:
            return True
        if attempt < self.attempt:
            return False
        if self.attempt:
            self.finish()
            self.out.print(f"[yellow]attempt {attempt} started: the answer restarts[/yellow]")
        self.attempt = attempt
        return True

    def _write(self, text: str, end: str = "\n") -> None:
        self.out.print(text, end=end, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def finish(self) -> None:
        """End the line of streamed tokens, if one is open."""
        if self.printed:
            self.out.print()
            self.printed = False


def _event_data(event: SseEvent) -> dict[str, Any]:
    try:
        data = event.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def print_sources(job: dict[str, Any], console: Console) -> None:
    """The passages an answer cites, numbered as the ``[n]`` citations in the answer.

    Starts with a blank line, to set the table apart from the answer printed just before.
    """
    sources = (job.get("result") or {}).get("sources") or []
    console.print()
    if not sources:
        console.print("[dim]no sources[/dim]")
        return
    table = Table(title="Sources", title_justify="left", show_lines=False, expand=False)
    table.add_column("#", justify="right", style="bold")
    table.add_column("source", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("excerpt", overflow="fold", max_width=70)
    for n, source in enumerate(sources, start=1):
        score = source.get("score")
        table.add_row(
            str(n),
            Text(str(source.get("source", ""))),
            f"{score:.3f}" if isinstance(score, int | float) else "",
            Text(_excerpt(str(source.get("text", "")))),
        )
    console.print(table)


def _excerpt(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _status(status: str | None) -> Text:
    return Text(str(status), style=_STATUS_STYLE.get(str(status), ""))


def print_job(job: dict[str, Any], console: Console) -> None:
    """One job in full: its fields, then its answer and sources or its ingest summary."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column(overflow="fold")
    fields.add_row("job", Text(str(job.get("job_id"))))
    fields.add_row("kind", Text(str(job.get("kind", ""))))
    fields.add_row("status", _status(job.get("status")))
    if job.get("query"):
        fields.add_row("query", Text(str(job["query"])))
    fields.add_row("collection", Text(str(job.get("collection", ""))))
    fields.add_row("attempts", str(job.get("attempts", "")))
    if job.get("cached"):
        fields.add_row("cached", "yes")
    for key in ("created_at", "started_at", "finished_at"):
        if job.get(key):
            fields.add_row(key.removesuffix("_at"), str(job[key]))
    error = job.get("error")
    if error:
        fields.add_row("error", Text(f"{error.get('type')}: {error.get('message')}", style="red"))
    console.print(fields)
    result = job.get("result") or {}
    if "answer" in result:
        console.print()
        console.print(Text(str(result["answer"])))
        print_sources(job, console)
    elif "documents" in result:
        console.print()
        _print_ingest(result["documents"], console)


def _print_ingest(documents: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Documents", title_justify="left")
    table.add_column("source", overflow="fold")
    table.add_column("status")
    table.add_column("chunks", justify="right")
    table.add_column("error", overflow="fold")
    styles = {"ingested": "green", "unchanged": "dim", "failed": "red"}
    for doc in documents:
        status = str(doc.get("status"))
        table.add_row(
            Text(str(doc.get("source", ""))),
            Text(status, style=styles.get(status, "")),
            str(doc.get("chunks", "")),
            Text(str(doc.get("error") or "")),
        )
    console.print(table)


def print_job_table(jobs: list[dict[str, Any]], console: Console) -> None:
    """Jobs one per line, newest first as the API returns them."""
    if not jobs:
        console.print("[dim]no jobs[/dim]")
        return
    id_width = max(len(str(job.get("job_id"))) for job in jobs)
    with_created = console.width >= 100  # on a narrow terminal the query needs the room
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # A fixed width keeps ids whole when the query wraps; on a very narrow terminal the id is
    # folded, never cropped, since users copy it into `jobs show`.
    table.add_column("job", width=id_width, overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    if with_created:
        table.add_column("created")
    table.add_column("query", max_width=60)
    for job in jobs:
        created = str(job.get("created_at") or "")[:19].replace("T", " ")
        table.add_row(
            Text(str(job.get("job_id"))),
            Text(str(job.get("kind", ""))),
            _status(job.get("status")),
            str(job.get("attempts", "")),
            *([created] if with_created else []),
            Text(str(job.get("query") or "")),
        )
    console.print(table)
