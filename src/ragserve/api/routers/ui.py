"""The web console: static files (HTML, one CSS, plain ES modules) served at ``/ui/``, and ``/``
redirecting there. No build step and nothing from a CDN: the files in ``api/ui/static`` are
the console as the browser runs it, and the pages talk to the JSON API like any client."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR: Final = Path(__file__).resolve().parents[1] / "ui" / "static"
CONSOLE_PATH: Final = "/ui"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def to_console() -> RedirectResponse:
    return RedirectResponse(f"{CONSOLE_PATH}/", status_code=307)


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/ui/`` (``index.html`` for the folder) and redirect ``/``."""
    app.include_router(router)
    app.mount(CONSOLE_PATH, StaticFiles(directory=STATIC_DIR, html=True), name="console")
