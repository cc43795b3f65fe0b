"""The errors the API client raises, and how an HTTP error answer becomes one.

The CLI maps them to exit codes in one place: :class:`ServiceUnreachable` when nothing
listens at the URL (exit 2 with a hint to start ``ragserve serve``), :class:`ApiError` for a
4xx/5xx answer, :class:`StreamInterrupted` when an event stream could not be resumed, and
:class:`ClientError` (their base) for anything else.
"""

from __future__ import annotations

import httpx


class ClientError(Exception):
    """Base of the errors the API client raises; the CLI catches this one type."""


class ServiceUnreachable(ClientError):
    """Nothing accepts connections at the base URL: the service is not started (or wrong URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"no ragserve service at {url}: start it with `ragserve serve`")


class ApiError(ClientError):
    """The service answered 4xx or 5xx; ``type`` and ``message`` come from its error body.

    ``retry_after`` is the answer's ``Retry-After`` header in seconds, when it had one.
    ``earlier_try_uncertain``: this answer came to a repeated try, after one whose outcome is
    unknown (its connection was cut, or a 502/503/504 came back), which may have gone through.
    """

    def __init__(
        self, status: int, type: str, message: str, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.type = type
        self.message = message
        self.retry_after = retry_after
        self.earlier_try_uncertain = False
        super().__init__(f"{status} {type}: {message}")


class TransportFailure(ClientError):
    """A try failed on its connection (reset, cut short, timed out) after it was sent, so the
    server may have acted on it; another try may succeed."""


class StreamInterrupted(ClientError):
    """An event stream kept dropping and could not be resumed within the retry deadline."""


def api_error(response: httpx.Response) -> ApiError:
    """Build an :class:`ApiError` from ragserve's ``{"error": ...}`` or FastAPI's 422 body.

    The body must have been read (``response.read()`` on a streamed response).
    """
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return ApiError(
            response.status_code, str(err.get("type")), str(err.get("message")), retry_after
        )
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        parts = []
        for item in body["detail"]:
            if not isinstance(item, dict):
                continue
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        return ApiError(response.status_code, "validation_error", "; ".join(parts), retry_after)
    if isinstance(body, dict) and "detail" in body:
        return ApiError(response.status_code, "http_error", str(body["detail"]), retry_after)
    text = response.text.strip()[:200] or response.reason_phrase
    return ApiError(response.status_code, "http_error", text, retry_after)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds; ``None`` when absent or not a number of seconds.

    ragserve and nginx send delta-seconds; the HTTP-date form is not worth its parsing here
    (the client then falls back to its own backoff).
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds else None  # not negative, not NaN
