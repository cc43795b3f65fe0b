"""HTTP client of the ragserve API: typed calls, typed errors, safe retries, resumable streams.

The CLI's ``ask`` and ``jobs`` commands are plain clients of the HTTP API (they may run on a
laptop against a cluster), so nothing here imports the server side, and nothing here prints:
rendering lives in ``ragserve.cli``.

- ``api``: :class:`ApiClient`, the calls, and what makes a retried ``POST`` safe;
- ``retry``: which failures are retried, the backoff and the deadline (:class:`RetryPolicy`);
- ``events``: :class:`JobEvent`, one event of a job's stream;
- ``errors``: the typed errors, which the CLI maps to exit codes in one place.
"""

from ragserve.client.api import ApiClient
from ragserve.client.errors import ApiError, ClientError, ServiceUnreachable, StreamInterrupted
from ragserve.client.events import TERMINAL_STATUSES, JobEvent
from ragserve.client.retry import RetryPolicy

__all__ = [
    "TERMINAL_STATUSES",
    "ApiClient",
    "ApiError",
    "ClientError",
    "JobEvent",
    "RetryPolicy",
    "ServiceUnreachable",
    "StreamInterrupted",
]
