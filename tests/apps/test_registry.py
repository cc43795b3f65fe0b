"""The app declarations, queues and per-app LLM settings, in-process (no service needed)."""

from __future__ import annotations

import pytest

from ragserve.errors import ConfigurationError
from ragserve.jobs.apps import (
    AppSpec,
    app_llm_settings,
    declared_queues,
    load_runnable,
    parse_app_specs,
    select_queues,
)
from ragserve.settings import Settings


def test_variable_and_flags_combine_and_a_later_name_wins() -> None:
    specs = parse_app_specs("a=mod:x; b=ragserve:rag ;", ["c=pkg.mod:holder.chain", "a=other:y"])
    assert specs == [
        AppSpec("a", "other:y"),
        AppSpec("b", "ragserve:rag"),
        AppSpec("c", "pkg.mod:holder.chain"),
    ]
    assert [s.built_in for s in specs] == [False, True, False]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("chain", "is not NAME=module:attribute"),
        ("x=module", "is not NAME=module:attribute"),
        ("x=:attr", "is not NAME=module:attribute"),
        ("Big=mod:x", "app name 'Big' must match"),
        ("a@canary=mod:x", "must match"),
        ("rag=mod:x", "'rag' is the built-in app's name"),
    ],
)
def test_bad_declarations_are_one_line_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        parse_app_specs(text)


def test_targets_must_be_importable_runnables() -> None:
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        load_runnable("no_such_module_here:chain")
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        load_runnable("ragserve.jobs.apps:no_such_attribute")
    with pytest.raises(ConfigurationError, match="is a str, not a LangChain Runnable"):
        load_runnable("ragserve.jobs.apps:RAG_APP")


def test_queues_rag_keeps_answer_and_apps_get_their_name() -> None:
    declared = declared_queues(["rag-small", "summarise"])
    assert declared == ["answer", "ingest", "rag-small", "summarise"]
    assert select_queues(declared, []) == declared  # default: every queue
    assert select_queues(declared, ["rag", "summarise", "answer"]) == ["answer", "summarise"]
    with pytest.raises(ConfigurationError, match="--queue nope: no such queue here"):
        select_queues(declared, ["nope"])


def test_model_class_settings_come_from_its_own_variables() -> None:
    base = Settings(llm_base_url="http://small:8000/v1", llm_model="small")
    environ = {
        "RAGSERVE_APP_RAG_LARGE_LLM_MODEL": "large",
        "RAGSERVE_APP_RAG_LARGE_LLM_MAX_TOKENS": "2048",
        "RAGSERVE_APP_RAG_LARGE_CHUNK_SIZE": "100",  # not an LLM setting: ignored
        "RAGSERVE_APP_OTHER_LLM_MODEL": "other",
    }
    large = app_llm_settings(base, "rag-large", environ)
    assert (large.llm_model, large.llm_max_tokens) == ("large", 2048)
    assert large.llm_base_url == base.llm_base_url  # falls back to RAGSERVE_LLM_*
    assert large.chunk_size == base.chunk_size
    assert app_llm_settings(base, "rag-small", environ) is base
    with pytest.raises(ConfigurationError, match="RAGSERVE_APP_RAG_LARGE_LLM_TEMPERATURE"):
        app_llm_settings(base, "rag-large", {"RAGSERVE_APP_RAG_LARGE_LLM_TEMPERATURE": "hot"})
