"""What one API process holds while it runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ragserve.api.metrics import Metrics
from ragserve.api.ratelimit import RateLimiter
from ragserve.db.api_keys import KeyVerifier
from ragserve.jobs.notify import NotificationHub
from ragserve.jobs.service import JobService
from ragserve.jobs.worker import Worker
from ragserve.kb.readiness import EmbedderCheck
from ragserve.services import Services


@dataclass
class AppState:
    services: Services
    jobs: JobService
    hub: NotificationHub
    metrics: Metrics
    models: EmbedderCheck
    keys: KeyVerifier | None = None
    """Checks API keys; None while RAGSERVE_AUTH is off."""
    rate_limiter: RateLimiter | None = None
    """Requests per second per caller; None without RAGSERVE_RATE_LIMIT_RPS."""
    worker: Worker | None = None
    worker_task: asyncio.Task[None] | None = None
    draining: bool = field(default=False)
    # Set a grace period after SIGTERM: open event streams end, and clients resume elsewhere.
    streams_closing: asyncio.Event = field(default_factory=asyncio.Event)
