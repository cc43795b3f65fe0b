"""One event of a job's stream, decoded from Server-Sent Events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from httpx_sse import ServerSentEvent

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


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
