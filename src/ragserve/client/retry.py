"""When the client tries a request again, and how long it waits in between.

A failure is worth another try when a later one can succeed without anything changing on the
client's side: the connection failed (refused, reset, cut before the answer, timed out), or the
answer was ``502``/``503``/``504`` (a load balancer without a healthy upstream, a draining API
replica, the database briefly away). Everything else (4xx, ``500``) is final.

The waits grow exponentially with jitter (so that clients cut off together do not come back
together), are at least the server's ``Retry-After`` (or an event stream's ``retry:`` hint),
and all tries of one logical call end by a deadline: no new try starts after it, and a wait
that would end past it is not started. (A try already running is bounded by its own timeout.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ragserve.client.errors import ApiError, ClientError, ServiceUnreachable, TransportFailure

RETRYABLE_STATUSES = frozenset({502, 503, 504})

# Transport failures a later try may not see. Not retried: UnsupportedProtocol (a bad URL),
# LocalProtocolError (our own malformed request), ProxyError.
RETRYABLE_TRANSPORT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.NetworkError,  # connect refused, reset, read/write error
    httpx.RemoteProtocolError,  # connection closed before or during the answer
    httpx.TimeoutException,
)


def retryable(error: ClientError) -> bool:
    """Whether another try of the same request may succeed."""
    if isinstance(error, ApiError):
        return error.status in RETRYABLE_STATUSES
    return isinstance(error, TransportFailure | ServiceUnreachable)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one logical call is retried; see the module docstring.

    ``deadline_s`` bounds all tries of one call (and, for an event stream, one run of failed
    reconnects: any event received starts a fresh run). ``unreachable_after_s`` is shorter:
    a client that has never had an answer from the service and whose connects are refused
    gives up after it with :class:`ServiceUnreachable` (nothing is listening, most likely; the
    CLI then tells the user to start the service instead of waiting the whole deadline). Once
    some answer came, a refused connect is a replica going away and is retried to the deadline.
    """

    deadline_s: float = 30.0
    base_delay_s: float = 0.25
    max_delay_s: float = 5.0
    unreachable_after_s: float = 3.0

    def backoff(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row: exponential, capped, and
        jittered to between half and all of it (so no wait is ever near zero)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (failures - 1))
        return ceiling * (0.5 + random.random() / 2)


class Retrying:
    """The retry state of one logical call: tries so far and the deadline.

    ``reached`` says whether the client has ever had an answer from the service (see
    :attr:`RetryPolicy.unreachable_after_s`).
    """

    def __init__(self, policy: RetryPolicy, reached: Callable[[], bool]) -> None:
        self.policy = policy
        self.reached = reached
        self.started = time.monotonic()
        self.failures = 0

    def wait_or_raise(self, error: ClientError, hint_s: float | None = None) -> None:
        """After a failed try: sleep until the next one, or raise ``error`` if there is none.

        ``hint_s`` is the server's ``Retry-After`` or ``retry:`` hint, a lower bound on the wait.
        """
        if not retryable(error):
            raise error
        self.failures += 1
        delay = self.policy.backoff(self.failures)
        if hint_s is not None:
            delay = max(delay, hint_s)
        elapsed = time.monotonic() - self.started
        limit = self.policy.deadline_s
        if isinstance(error, ServiceUnreachable) and not self.reached():
            limit = min(limit, self.policy.unreachable_after_s)
        if elapsed + delay > limit:
            error.add_note(f"gave up after {self.failures} tries in {elapsed:.1f} s")
            raise error
        time.sleep(delay)
