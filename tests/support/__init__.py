"""Helpers shared by the tests: child processes, the mock LLM, databases, settings, sample data.

How to import: ``tests/`` is on ``sys.path`` through pytest's ``pythonpath = ["tests"]``
option (``pyproject.toml``), so test files write ``from support import Proc, service_env``.
``tests/`` is deliberately not a package: test modules keep their short names.

Fixtures live in ``tests/conftest.py`` and are built from these helpers; nothing here starts
anything at import time.
"""

from __future__ import annotations

from support.config import service_env, settings_for
from support.database import with_database
from support.mock_llm import MockLLM, start_mock_llm
from support.processes import (
    ROOT,
    Proc,
    child_env,
    free_port,
    ragserve_command,
    running_service,
    wait_http,
)
from support.squad import SQUAD_SAMPLE, read_jsonl

__all__ = [
    "ROOT",
    "SQUAD_SAMPLE",
    "MockLLM",
    "Proc",
    "child_env",
    "free_port",
    "ragserve_command",
    "read_jsonl",
    "running_service",
    "service_env",
    "settings_for",
    "start_mock_llm",
    "wait_http",
    "with_database",
]
