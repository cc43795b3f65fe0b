"""Configuration for code under test: ``Settings`` in-process, ``RAGSERVE_*`` for children."""

from __future__ import annotations

from typing import Any

from ragserve.settings import Settings


def service_env(database_url: str, **settings: Any) -> dict[str, str]:
    """``RAGSERVE_*`` variables for a child process; a short drain so tests stop quickly."""
    env = {"RAGSERVE_DATABASE_URL": database_url, "RAGSERVE_DRAIN_S": "3"}
    env.update({f"RAGSERVE_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def settings_for(database_url: str, **overrides: Any) -> Settings:
    """Settings for in-process code pointing at ``database_url``."""
    return Settings(database_url=database_url, **overrides)
