"""Settings catch configuration mistakes early, say which variable is wrong in one line, and
keep secrets out of logs; the README documents every setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ragserve.errors import ConfigurationError
from ragserve.settings import Settings, load_settings
from support import ROOT


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``RAGSERVE_*`` of the developer's shell leaks into these tests."""
    for name in [n for n in os.environ if n.startswith("RAGSERVE_")]:
        monkeypatch.delenv(name)


def load_with(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        monkeypatch.setenv(f"RAGSERVE_{name.upper()}", value)
    return load_settings()


def error_for(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_with(monkeypatch, **variables)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_load(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_with(monkeypatch)
    assert settings.embedded and settings.embeddings == "local"
    assert (settings.chunk_size, settings.chunk_overlap) == (800, 100)


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_with(
        monkeypatch,
        database_url="postgresql://u@db:5432/rag",
        chunk_size="400",
        chunk_overlap="50",
        worker_concurrency="4",
    )
    assert settings.database_url is not None and not settings.embedded
    assert settings.database_url.get_secret_value() == "postgresql://u@db:5432/rag"
    assert (settings.chunk_size, settings.chunk_overlap, settings.worker_concurrency) == (
        400,
        50,
        4,
    )


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_with(
        monkeypatch, llm_base_url="", database_url="", llm_api_key="", chunk_size=""
    )
    assert settings.llm_base_url is None
    assert settings.database_url is None
    assert settings.llm_api_key is None
    assert settings.chunk_size == 800


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"chunk_overlap": "900"}, "RAGSERVE_CHUNK_OVERLAP"),  # default chunk size 800
        ({"chunk_size": "300", "chunk_overlap": "300"}, "RAGSERVE_CHUNK_OVERLAP"),
        ({"chunk_size": "50"}, "RAGSERVE_CHUNK_SIZE"),
        ({"worker_concurrency": "many"}, "RAGSERVE_WORKER_CONCURRENCY"),
        ({"embeddings": "sentence-transformers"}, "RAGSERVE_EMBEDDINGS"),
        ({"embeddings": "openai"}, "RAGSERVE_EMBEDDINGS_BASE_URL"),
        ({"llm_base_url": "localhost:11434/v1"}, "RAGSERVE_LLM_BASE_URL"),
        ({"database_url": "mysql://db/rag"}, "RAGSERVE_DATABASE_URL"),
        ({"llm_temperature": "5"}, "RAGSERVE_LLM_TEMPERATURE"),
        ({"job_timeout_s": "0"}, "RAGSERVE_JOB_TIMEOUT_S"),
    ],
)
def test_a_mistake_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    assert named in error_for(monkeypatch, **variables)


def test_openai_embeddings_accept_the_llm_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_with(monkeypatch, embeddings="openai", llm_base_url="http://llm:8000/v1")
    assert settings.embeddings_base_url is None  # the embedder falls back to the LLM's URL


def test_several_mistakes_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_for(monkeypatch, max_attempts="0", drain_s="-1")
    assert "RAGSERVE_MAX_ATTEMPTS" in message and "RAGSERVE_DRAIN_S" in message


def test_secrets_do_not_show_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_with(monkeypatch, llm_api_key="sk-very-secret", embeddings_api_key="sk-emb")
    assert settings.llm_api_key is not None and settings.embeddings_api_key is not None
    assert settings.llm_api_key.get_secret_value() == "sk-very-secret"
    assert settings.embeddings_api_key.get_secret_value() == "sk-emb"
    assert "sk-very-secret" not in repr(settings) and "sk-emb" not in str(settings)
    message = error_for(monkeypatch, chunk_overlap="sk-very-secret")
    assert "sk-very-secret" not in message  # inputs are not echoed


def test_cli_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "RAGSERVE_CHUNK_OVERLAP": "900",
        "RAGSERVE_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "ragserve", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "RAGSERVE_CHUNK_OVERLAP" in lines[0]


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(RAGSERVE_[A-Z0-9_]+)`", section, re.MULTILINE))
    missing = {f"RAGSERVE_{name.upper()}" for name in Settings.model_fields} - documented
    assert not missing, f"README.md configuration table lacks {sorted(missing)}"
