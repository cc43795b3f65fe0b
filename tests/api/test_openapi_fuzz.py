"""Schemathesis against a real ``ragserve api``: generated requests to every operation of
``/openapi.json`` never get a 5xx, and every response matches the published schema.

Left out: the event stream (``/v1/jobs/{job_id}/events`` streams until the job ends) and
``/v1/ask`` (it waits up to ``wait_s`` for a worker this test does not run).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from support import running_service, service_env

MAX_EXAMPLES = 20
EXCLUDED = re.compile(r"(/events$|^/v1/ask$)")


@pytest.fixture(scope="module")
def fuzzed_api(
    new_database_url: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = service_env(new_database_url(), max_upload_mb=5)
    # running_service also fails the module if the API logged a traceback.
    with running_service(env, tmp_path_factory.mktemp("fuzz"), command="api") as (url, _):
        yield url


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_5xx_and_responses_match_the_schema(fuzzed_api: str) -> None:
    # Hypothesis runs per operation here rather than through schemathesis's pytest plugin,
    # whose lazy-fixture mode does not work with this pytest.
    schema = schemathesis.openapi.from_url(f"{fuzzed_api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [op for op in operations if not EXCLUDED.search(op.path)]
    assert len(fuzzed) >= 10, [op.label for op in operations]
    for operation in fuzzed:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS, timeout=30)

        fuzz()


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/jobs", {"query": "q", "filters": {"k\u0000": 1}}),
        ("/v1/jobs", {"query": "nul \u0000 inside"}),
        ("/v1/collections/kb/documents", {"documents": [{"source": "s", "text": "a\u0000b"}]}),
    ],
)
def test_nul_characters_get_422_not_a_database_500(
    fuzzed_api: str, path: str, body: dict[str, Any]
) -> None:
    # Found by the fuzzer: PostgreSQL text/jsonb cannot hold NUL, and the insert failed as a 500.
    response = httpx.post(f"{fuzzed_api}{path}", json=body, timeout=10)
    assert response.status_code == 422, response.text
    assert "NUL" in response.text
