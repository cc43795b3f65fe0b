"""Typed exceptions used inside ragserve.

They are mapped to HTTP statuses once (``ragserve.api``) and to exit codes once (``ragserve.cli``).
``retryable`` tells the worker whether another attempt could succeed.
"""

from __future__ import annotations


class RagserveError(Exception):
    """Base of every error ragserve raises on purpose."""

    retryable: bool = False

    @property
    def type(self) -> str:
        return type(self).__name__


class InvalidInput(RagserveError):
    """The request or document is malformed; retrying will not help."""


class PayloadTooLarge(InvalidInput):
    """A request exceeds a size or count limit (``RAGSERVE_MAX_UPLOAD_MB`` and friends)."""


class UnsupportedMediaType(InvalidInput):
    """An uploaded file is of a type no loader reads."""


class ConfigurationError(RagserveError):
    """A ``RAGSERVE_*`` setting is invalid; the message is one line naming the variable."""


class NotFound(RagserveError):
    """A collection, document or job does not exist."""


class Unauthorized(RagserveError):
    """A request without a valid API key (``401``)."""


class Forbidden(RagserveError):
    """A valid key asked for something only an admin key may do (``403``)."""


class TooManyRequests(RagserveError):
    """A limit refuses the request for now (``429``); ``retry_after_s`` says when to retry."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class RateLimited(TooManyRequests):
    """The caller sends more than ``RAGSERVE_RATE_LIMIT_RPS`` requests a second."""


class TenantQueueFull(TooManyRequests):
    """The tenant already has ``RAGSERVE_MAX_QUEUED_PER_TENANT`` jobs queued or running."""


class Conflict(RagserveError):
    """The request contradicts existing state (for example an idempotency key reused)."""


class DocumentError(RagserveError):
    """One document could not be read (corrupt, empty, unsupported)."""


class DatabaseError(RagserveError):
    """The database could not be reached or set up."""

    retryable = True


class ProviderError(RagserveError):
    """A model endpoint (LLM or embeddings) failed permanently (4xx other than 429)."""


class TransientProviderError(ProviderError):
    """A model endpoint failed in a way another attempt may fix (5xx, 429, timeout, network)."""

    retryable = True


class JobCancelled(RagserveError):
    """The job was cancelled while running."""


class CircuitOpen(TransientProviderError):
    """A model endpoint's circuit breaker is open: the call was not made (or just tripped it).

    The worker parks the job: re-queued after ``retry_after_s``, the attempt given back, since
    the job did nothing wrong and the endpoint is known to be down.
    """

    def __init__(self, provider: str, retry_after_s: float) -> None:
        self.provider = provider
        self.retry_after_s = retry_after_s
        super().__init__(f"{provider} circuit is open; retry in {retry_after_s:.1f} s")


class QueueFull(TooManyRequests):
    """The new job's estimated wait exceeds ``RAGSERVE_MAX_QUEUE_WAIT_S``."""


class BudgetExhausted(TooManyRequests):
    """The tenant has used its ``RAGSERVE_DAILY_TOKEN_BUDGET`` for today (UTC)."""


class PermanentError(RagserveError):
    """Raised by an app (a user's Runnable): another attempt cannot succeed, fail the job now.

    Subclass it, or set ``ragserve_permanent = True`` on any exception (docs/APPS.md).
    """
