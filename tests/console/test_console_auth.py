"""The console with API keys on (``RAGSERVE_AUTH=api_key``): the first ``401`` opens the key
prompt; the key then goes as ``Authorization: Bearer`` on fetch calls, uploads (XHR) and the
event stream (read with fetch, since EventSource sends no headers); it is kept for the tab only.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from support import child_env, ragserve_command, running_service, service_env


@pytest.fixture(scope="module")
def keyed_service(
    new_database_url: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A service that requires keys (extractive answers: no LLM needed), and a tenant's key."""
    env = service_env(new_database_url(), auth="api_key")
    with running_service(env, tmp_path_factory.mktemp("console-auth")) as (url, _):
        created = subprocess.run(
            ragserve_command("keys", "create", "--tenant", "console"),
            env=child_env(env),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        key = created.stdout.strip().splitlines()[-1].strip()
        yield url, key


def test_the_key_prompt_then_everything_works_with_the_key(
    new_context: Callable[..., BrowserContext], keyed_service: tuple[str, str]
) -> None:
    url, key = keyed_service
    context = new_context(url, "en-US")
    page = context.new_page()
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            sent.append({"url": r.url, "auth": r.headers.get("authorization")})
            if "/v1/" in r.url
            else None
        ),
    )
    try:
        page.goto("/ui/#/documents")  # the console itself loads without a key
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        page.get_by_label("API key", exact=True).fill(key)
        page.get_by_role("button", name="Use this key").click()
        expect(dialog).to_be_hidden()
        # An upload (XHR) with the key.
        page.get_by_label("Collection").fill("keyed")
        page.locator("#docs-files").set_input_files(
            [
                {
                    "name": "leave.md",
                    "mimeType": "text/markdown",
                    "buffer": b"Full-time employees get 23 days of paid annual leave.",
                }
            ]
        )
        upload = page.locator('#docs-uploads li[data-file="leave.md"]')
        expect(upload).to_have_attribute("data-outcome", "ingested")
        # A question streamed over fetch with the key.
        page.goto("/ui/#/ask")
        page.get_by_label("Collection").select_option("keyed")
        page.get_by_label("Question").fill("How many days of annual leave do employees get?")
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
        expect(page.locator("#answer")).to_contain_text("23")
        streams = [r for r in sent if r["url"].endswith("/events")]
        assert streams and all(r["auth"] == f"Bearer {key}" for r in streams), streams
        # Kept for this tab only (not in localStorage); forgetting it brings the prompt back.
        assert page.evaluate("sessionStorage.getItem('ragserve.apiKey')") == key
        assert key not in str(page.evaluate("JSON.stringify(localStorage)"))
        page.get_by_role("button", name="Forget key").click()
        expect(page.locator("#key-dialog")).to_be_visible()
    finally:
        context.close()
