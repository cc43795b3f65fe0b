"""The browser for the console tests: Debian's Chromium driven by Playwright, one per module.

Playwright's own browser builds are never downloaded (``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1``);
the system's ``chromium`` runs instead, without its sandbox (tests run as root in CI).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

CHROMIUM = shutil.which("chromium")
NO_CHROMIUM = "Debian's chromium is not installed (apt-get install chromium)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


ContextFactory = Callable[..., BrowserContext]


@pytest.fixture(scope="module")
def new_context(browser: Browser) -> ContextFactory:
    """``new_context(base_url, locale, width=1280)``: a fresh browser profile (its own
    storage) whose language is ``locale``."""

    def make(base_url: str, locale: str, width: int = 1280) -> BrowserContext:
        context = browser.new_context(
            base_url=base_url, locale=locale, viewport={"width": width, "height": 860}
        )
        context.set_default_timeout(20_000)
        return context

    return make
