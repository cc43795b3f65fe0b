"""Fixtures of the job tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import MockLLM


@pytest.fixture
def llm(mock_llm: MockLLM) -> Iterator[MockLLM]:
    """The session's mock LLM, put back to the session defaults after the test."""
    yield mock_llm
    mock_llm.configure(ttft=0.05, tps=200, error_rate=0.0)
