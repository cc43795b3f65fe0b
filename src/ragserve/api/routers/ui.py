"""The web console: static files (HTML, one CSS, plain ES modules) served at ``/ui/``, and ``/``
redirecting there. No build step and nothing from a CDN: the files in ``api/ui/static`` are
the console as the browser runs it, and the pages talk to the JSON API like any client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).resolve().parents[1] / "ui" / "static"
CONSOLE_PATH: Final = "/ui"

CONSOLE_HEADERS: Final = {
    # Revalidate every time (a cheap 304 thanks to the ETag): after an upgrade no browser
    # mixes cached modules of the old release with new ones.
    "Cache-Control": "no-cache",
    # The console loads nothing from elsewhere and runs no inline script: say so, so that an
    # injected script could not run either.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
        " frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def to_console() -> RedirectResponse:
    return RedirectResponse(f"{CONSOLE_PATH}/", status_code=307)


class ConsoleFiles(StaticFiles):
    """Static files with the console's headers."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(CONSOLE_HEADERS)
        return response


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/ui/`` (``index.html`` for the folder) and redirect ``/``."""
    app.include_router(router)
    app.mount(CONSOLE_PATH, ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
