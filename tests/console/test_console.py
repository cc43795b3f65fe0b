"""The web console end to end: Debian's Chromium, driven by Playwright, against a real
``ragserve serve`` (PostgreSQL, a worker, the mock LLM streaming slowly enough to watch and to
cancel). Every page's main flow, then screenshots of each page in English and in Chinese, and
a check that no page scrolls sideways at 390 px.

Screenshots go to a temporary folder; with ``RAGSERVE_UPDATE_SCREENSHOTS=1`` also to
``docs/img/`` (the ones the README and docs/CONSOLE.md show).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from support import ROOT, MockLLM, running_service, service_env, start_mock_llm

COLLECTION = "handbook"
DOCS = [
    {
        "source": "leave.md",
        "text": "# Leave\n\n## Annual leave\n\nFull-time employees get 23 days of paid annual "
        "leave. Unused days carry over until March.",
    },
    {
        "source": "wifi.md",
        "text": "# Office\n\n## Wi-Fi\n\nThe guest Wi-Fi network is called Lumen-Guest. "
        "The password changes every Monday.",
    },
]
LONG_TEXT = " ".join(f"word{i}" for i in range(400))
"""A document whose first sentence is long: its answer streams for many seconds."""

SLOW_TPS = 12.0
APPS = {
    "spell": "console_apps:spell",
    "echo": "console_apps:echo",
    "rag-large": "ragserve:rag",
}
"""The apps served besides ``rag`` (tests/console/console_apps.py, and a model class)."""
ContextFactory = Callable[..., BrowserContext]
UPDATE_SCREENSHOTS = os.environ.get("RAGSERVE_UPDATE_SCREENSHOTS") == "1"
DOCS_IMG = ROOT / "docs" / "img"


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLM]:
    """A mock LLM of the module's own: its speed is changed here without touching others."""
    log = tmp_path_factory.mktemp("console-llm") / "mock.log"
    proc, mock = start_mock_llm(log, "--ttft", "0.3", "--tps", str(SLOW_TPS))
    yield mock
    proc.stop()


@pytest.fixture(scope="module")
def service(
    new_database_url: Callable[[], str], llm: MockLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = service_env(
        new_database_url(),
        llm_base_url=llm.base_url,
        llm_model="mock",
        worker_concurrency=2,
        cache_ttl_s=0,
        apps=";".join(f"{name}={target}" for name, target in APPS.items()),
    )
    env.update(
        PYTHONPATH=str(ROOT / "tests" / "console"),
        OPENAI_BASE_URL=llm.base_url,
        OPENAI_API_KEY="sk-test",
    )
    with running_service(env, tmp_path_factory.mktemp("console-serve")) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as client:
            documents = [*DOCS, {"source": "long.md", "text": LONG_TEXT}]
            accepted = client.post(
                f"/v1/collections/{COLLECTION}/documents", json={"documents": documents}
            )
            assert accepted.status_code == 202, accepted.text
            assert wait_job(client, accepted.json()["job_id"])["status"] == "succeeded"
        yield url


@pytest.fixture(scope="module")
def api(service: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def page(new_context: ContextFactory, service: str) -> Iterator[Page]:
    """An English page (the browser's language decides the console's)."""
    context = new_context(service, "en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Console errors include a blocked resource (Content-Security-Policy) or a failed request.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Page, str], None]:
    folder = tmp_path_factory.mktemp("console-screenshots")

    def take(page: Page, name: str) -> None:
        page.wait_for_timeout(150)  # let the last render paint
        path = folder / f"console-{name}.png"
        page.screenshot(path=path, full_page=True)
        if UPDATE_SCREENSHOTS:
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMG / path.name)

    return take


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} not done: {job}"
        time.sleep(0.1)


def job_id_in_url(page: Page) -> str:
    match = re.search(r"job=([0-9a-f-]{36})", page.url)
    assert match, page.url
    return match.group(1)


def ask(page: Page, question: str) -> str:
    page.goto("/ui/#/ask")
    page.get_by_label("Collection").select_option(COLLECTION)
    page.get_by_label("Question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()
    page.wait_for_url(re.compile(r"job="))
    return job_id_in_url(page)


def watch_stream(page: Page, timeout: float = 30) -> list[int]:
    """The answer's lengths seen while it streams (non-empty ones), until it is done."""
    answer = page.locator("#answer")
    expect(answer).to_have_attribute("aria-busy", "true")
    lengths: list[int] = []
    deadline = time.monotonic() + timeout
    while answer.get_attribute("aria-busy") == "true":
        assert time.monotonic() < deadline, "the answer did not finish"
        text = answer.inner_text().strip()
        if text and not text.startswith("Waiting"):
            lengths.append(len(text))
        page.wait_for_timeout(40)
    return lengths


def pick_app(page: Page, app: str) -> None:
    page.goto("/ui/#/ask")
    page.get_by_label("App", exact=True).select_option(app)


def submit_app_input(page: Page, app: str, value: str) -> str:
    pick_app(page, app)
    page.locator("#ask-input").fill(value)
    page.get_by_role("button", name="Ask", exact=True).click()
    page.wait_for_url(re.compile(rf"app={app}&job="))
    return job_id_in_url(page)


def test_root_redirects_to_the_console(api: httpx.Client) -> None:
    response = api.get("/", follow_redirects=True)
    assert response.status_code == 200
    assert str(response.url).endswith("/ui/")
    assert 'type="module"' in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-cache"


def test_upload_two_files_and_a_bad_one(
    page: Page, screenshots: Callable[[Page, str], None]
) -> None:
    page.goto("/ui/#/documents")
    page.get_by_label("Collection").fill(COLLECTION)
    # A real drop event carrying three files, as a file manager would send it.
    page.locator("#docs-drop").evaluate(
        """(zone) => {
            const data = new DataTransfer();
            data.items.add(new File(["# Parking\\n\\nParking is free on level B2."], "parking.md"));
            data.items.add(new File(["Lunch is served from noon in the canteen."], "lunch.txt"));
            data.items.add(new File(["%PDF-1.4 this is not a PDF at all"], "broken.pdf"));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }"""
    )
    uploads = page.locator("#docs-uploads")
    expect(uploads.locator("li[data-outcome]")).to_have_count(3)
    expect(uploads.locator('li[data-file="parking.md"]')).to_have_attribute(
        "data-outcome", "ingested"
    )
    expect(uploads.locator('li[data-file="lunch.txt"]')).to_have_attribute(
        "data-outcome", "ingested"
    )
    bad = uploads.locator('li[data-file="broken.pdf"]')
    expect(bad).to_have_attribute("data-outcome", "failed")
    expect(bad).to_contain_text("Failed: ")
    expect(uploads.locator('li[data-file="parking.md"]')).to_contain_text("Ingested (1 chunks)")
    # The list shows them with their chunks; the failed file is not there.
    table = page.locator("#docs-table")
    expect(table.locator('tr[data-source="parking.md"]')).to_be_visible()
    expect(table.locator('tr[data-source="lunch.txt"]')).to_be_visible()
    expect(table.locator('tr[data-source="broken.pdf"]')).to_have_count(0)
    # The same file again is "unchanged".
    page.locator("#docs-files").set_input_files(
        [
            {
                "name": "lunch.txt",
                "mimeType": "text/plain",
                "buffer": b"Lunch is served from noon in the canteen.",
            }
        ]
    )
    expect(uploads.locator('li[data-file="lunch.txt"]').last).to_have_attribute(
        "data-outcome", "unchanged"
    )
    screenshots(page, "documents-en")


def test_ask_streams_a_cited_answer(
    page: Page, api: httpx.Client, screenshots: Callable[[Page, str], None]
) -> None:
    job_id = ask(page, "How many days of annual leave do employees get?")
    answer = page.locator("#answer")
    lengths = watch_stream(page)
    # Streaming: the text was seen growing while the job still ran.
    assert len(set(lengths)) >= 2, lengths
    final = answer.inner_text()
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert final.strip() == job["result"]["answer"].strip()
    expect(page.locator("#ask-job-id")).to_have_text(job_id)
    for fact in ("queue_wait", "first_token", "duration"):
        expect(page.locator(f'#ask-facts [data-fact="{fact}"] dd')).to_have_text(
            re.compile(r"\d+(\.\d)? m?s")
        )
    # The citation opens the cited excerpt, with its section (from the keyboard, too).
    page.locator("#answer button.cite").first.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#citation-dialog")
    expect(dialog).to_be_visible()
    cited = job["result"]["sources"][0]
    expect(dialog).to_contain_text(cited["source"])
    expect(dialog.locator("blockquote")).to_contain_text("23 days")
    if cited["location"]["section"]:
        expect(dialog).to_contain_text(cited["location"]["section"][-1])
    screenshots(page, "ask-citation-en")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    screenshots(page, "ask-en")


def test_scoped_question_resumes_after_reload_and_cancels(page: Page, api: httpx.Client) -> None:
    # Scope the question to the long document from the documents page.
    page.goto("/ui/#/documents")
    page.get_by_label("Collection").fill(COLLECTION)
    page.get_by_label("Collection").dispatch_event("change")
    page.get_by_label("Select long.md").check()
    page.get_by_role("button", name="Ask about the selected (1)").click()
    expect(page.locator("#ask-scope")).to_contain_text("long.md")
    page.get_by_label("Question").fill("What is in the long document?")
    page.get_by_role("button", name="Ask", exact=True).click()
    page.wait_for_url(re.compile(r"job="))
    job_id = job_id_in_url(page)
    request = api.get(f"/v1/jobs/{job_id}").json()
    answer = page.locator("#answer")
    expect(answer).to_contain_text(re.compile(r"word\d+ word\d+ word\d+"))
    page.reload()
    expect(page.get_by_label("Question")).to_have_value("What is in the long document?")
    # After the reload the page replays and follows the same job: the text keeps growing.
    expect(answer).to_have_attribute("aria-busy", "true")
    expect(answer).to_contain_text(re.compile(r"word\d+ word\d+ word\d+"))
    before = len(answer.inner_text())
    page.wait_for_timeout(700)
    assert len(answer.inner_text()) > before
    assert job_id_in_url(page) == job_id
    assert request["collection"] == COLLECTION
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#ask-notice")).to_contain_text("cancelled")
    expect(answer).to_have_attribute("aria-busy", "false")
    assert wait_job(api, job_id)["status"] == "cancelled"
    sources = api.get(f"/v1/jobs/{job_id}/timeline").json()["events"]
    cited = next(e for e in sources if e["type"] == "sources")["data"]["sources"]
    assert {s["source"] for s in cited} == {"long.md"}  # the scope held
    page.get_by_role("button", name="Ask all documents").click()
    expect(page.locator("#ask-scope")).to_be_empty()


def test_jobs_table_and_timeline(
    page: Page, api: httpx.Client, screenshots: Callable[[Page, str], None]
) -> None:
    answered = api.get("/v1/jobs", params={"kind": "answer", "status": "succeeded"}).json()
    job_id = answered["jobs"][0]["job_id"]
    page.goto("/ui/#/jobs")
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("How many days")
    # Filters: only ingest jobs.
    page.get_by_label("Kind").select_option("ingest")
    expect(page.locator("#jobs-table tr[data-job]").first).to_contain_text("ingest")
    expect(page.locator(f'#jobs-table tr[data-job="{job_id}"]')).to_have_count(0)
    page.get_by_label("Kind").select_option("")
    screenshots(page, "jobs-en")
    page.locator(f'#jobs-table tr[data-job="{job_id}"] a').click()
    timeline = page.locator("#job-timeline")
    for kind in ("status", "sources", "token", "done"):
        expect(timeline.locator(f'li[data-type="{kind}"]').first).to_be_visible()
    expect(timeline.locator('li[data-type="status"]')).to_have_count(2)  # queued, running
    screenshots(page, "job-en")


def test_cancelled_job_retries_from_its_page(page: Page, api: httpx.Client) -> None:
    cancelled = api.get("/v1/jobs", params={"status": "cancelled"}).json()["jobs"]
    job_id = cancelled[0]["job_id"]
    page.goto(f"/ui/#/jobs/{job_id}")
    page.get_by_role("button", name="Retry job").click()
    expect(page.locator("#job-cancel")).to_be_visible()  # queued or running again
    page.locator("#job-cancel").click()
    expect(page.locator("#job-retry")).to_be_visible()
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_operations_queue_rises_and_falls(
    page: Page, api: httpx.Client, llm: MockLLM, screenshots: Callable[[Page, str], None]
) -> None:
    page.goto("/ui/#/ops")
    depth = page.locator('#ops-queues tr[data-queue="answer"] td[data-field="depth"]')
    expect(depth).to_have_text("0")
    expect(page.locator("#ops-workers")).to_contain_text(":")
    llm.configure(ttft=2.0, tps=200)
    try:
        for i in range(6):
            response = api.post(
                "/v1/jobs",
                json={"query": f"Which Wi-Fi network, take {i}?", "collection": COLLECTION},
            )
            assert response.status_code == 202, response.text
        expect(depth).to_have_text(re.compile(r"^[2-9]$"))
        expect(page.locator("#ops-workers a").first).to_be_visible()  # a running job
        screenshots(page, "ops-en")
        expect(depth).to_have_text("0", timeout=30_000)
    finally:
        llm.configure(ttft=0.3, tps=SLOW_TPS)
    # The failed upload is a dead letter; re-driving it queues it again.
    failed = api.get("/v1/jobs", params={"status": "failed", "kind": "ingest"}).json()["jobs"]
    dead_id = failed[0]["job_id"]
    dead = page.locator(f'#ops-dead tr[data-job="{dead_id}"]')
    expect(dead).to_contain_text("DocumentError")
    attempts = failed[0]["attempts"]
    dead.get_by_role("button", name="Re-drive").click()
    expect(page.locator("#toast")).to_contain_text("queued again")
    assert wait_job(api, dead_id)["attempts"] > attempts
    expect(page.locator(".chart rect.s-ok").first).to_be_attached()


def test_chinese_pages_and_a_narrow_screen(
    new_context: ContextFactory,
    service: str,
    api: httpx.Client,
    screenshots: Callable[[Page, str], None],
) -> None:
    answered = api.get("/v1/jobs", params={"kind": "answer", "status": "succeeded"}).json()
    job_id = next(j["job_id"] for j in answered["jobs"] if j["query"].startswith("How many"))
    context = new_context(service, "zh-CN")
    page = context.new_page()
    pages = {
        "ask": f"#/ask?job={job_id}",
        "documents": "#/documents",
        "jobs": "#/jobs",
        "job": f"#/jobs/{job_id}",
        "ops": "#/ops",
    }
    try:
        for name, route in pages.items():
            page.goto(f"/ui/{route}")
            expect(page.locator("nav a[aria-current=page]")).to_be_visible()
            expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
            expect(page.locator("nav")).to_contain_text("提问")
            page.wait_for_load_state("networkidle")
            screenshots(page, f"{name}-zh")
        # The switch goes back to English.
        page.get_by_label("语言").select_option("en")
        expect(page.locator("nav")).to_contain_text("Operations")
    finally:
        context.close()
    narrow = new_context(service, "en-US", width=390)
    page = narrow.new_page()
    try:
        for route in pages.values():
            page.goto(f"/ui/{route}")
            page.wait_for_load_state("networkidle")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= 390, (route, scroll_width)
        screenshots(page, "ops-390px-en")
        # From the keyboard: the skip link first, then the navigation's links.
        page.reload()
        page.keyboard.press("Tab")
        expect(page.locator(".skip")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        assert page.url.endswith("#/ops")  # the skip link leaves the route alone
        page.reload()
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Ask")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Ask")).to_be_visible()
    finally:
        narrow.close()


def test_read_endpoints_page_filter_and_count(api: httpx.Client) -> None:
    """The endpoints behind the pages: keyset pages cover every job once, in order; filters
    hold; the per-minute figures add up to the jobs that finished."""
    everything = api.get("/v1/jobs", params={"limit": 1000}).json()
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while page := api.get("/v1/jobs", params=params).json()["jobs"]:
        seen += [job["job_id"] for job in page]
        params["before"] = page[-1]["job_id"]
    assert seen == [job["job_id"] for job in everything["jobs"]]
    ingest = api.get("/v1/jobs", params={"kind": "ingest", "collection": COLLECTION}).json()
    assert ingest["jobs"] and {job["kind"] for job in ingest["jobs"]} == {"ingest"}
    ran = [job for job in everything["jobs"] if job["started_at"]]
    assert all(job["worker_id"] and job["queue_wait_s"] is not None for job in ran)
    unknown = "00000000-0000-0000-0000-000000000000"
    assert api.get("/v1/jobs", params={"before": unknown}).json()["jobs"] == []
    assert api.get("/v1/jobs", params={"before": "nope"}).status_code == 422
    assert api.get(f"/v1/jobs/{unknown}/timeline").status_code == 404

    buckets = api.get("/v1/ops/throughput", params={"minutes": 60}).json()["buckets"]
    assert len(buckets) == 60
    for status in ("succeeded", "failed", "cancelled"):
        finished = [j for j in everything["jobs"] if j["status"] == status and not j["cached"]]
        assert sum(b[status] for b in buckets) == len(finished), status
    assert sum(b["submitted"] for b in buckets) == len(everything["jobs"])
    overview = api.get("/v1/ops/overview").json()
    counts = {
        s: sum(1 for j in everything["jobs"] if j["status"] == s) for s in overview["statuses"]
    }
    assert overview["statuses"] == counts
    assert [w["version"] for w in overview["workers"]] == [ran[0]["version"]]


def test_key_prompt_keeps_the_key_for_the_tab_and_sends_it(page: Page) -> None:
    """The client half of API keys, on this server without them: the prompt (which a 401
    opens) stores the key in sessionStorage only, and every request then carries it."""
    page.goto("/ui/#/jobs")
    expect(page.locator("#jobs-table")).to_be_visible()
    expect(page.get_by_role("button", name="Forget key")).to_be_hidden()
    page.evaluate("import('/ui/js/api.js').then((api) => { window.keyAsked = api.askForKey(); })")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("API key", exact=True)).to_be_focused()
    page.keyboard.type("test-key-1")
    with page.expect_request(lambda r: "/v1/jobs?" in r.url) as sent:
        page.keyboard.press("Enter")
        page.evaluate("window.keyAsked")
    assert sent.value.headers.get("authorization") == "Bearer test-key-1"
    expect(dialog).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('ragserve.apiKey')") == "test-key-1"
    assert "test-key-1" not in page.evaluate("JSON.stringify(localStorage)")
    page.get_by_role("button", name="Forget key").click()
    assert page.evaluate("sessionStorage.getItem('ragserve.apiKey')") is None
    expect(page.get_by_role("button", name="Forget key")).to_be_hidden()


def test_app_streams_chunks_resumes_and_shows_its_output(
    page: Page, api: httpx.Client, screenshots: Callable[[Page, str], None]
) -> None:
    """A user app: its input prefilled from its schema, chunks streaming, a reload that replays
    them once each, the output as JSON; the jobs table filtered to apps shows it."""
    pick_app(page, "spell")
    expect(page.get_by_label("Input (JSON)")).to_have_value(re.compile(r'"word": ""'))
    expect(page.get_by_label("Question")).to_be_hidden()
    word = "streaming"
    job_id = submit_app_input(page, "spell", f'{{"word": "{word}", "pause_s": 0.25}}')
    chunks = page.locator("#app-chunks li")
    expect(chunks.nth(1)).to_be_attached()
    seen = chunks.count()
    page.reload()
    expect(chunks.first).to_contain_text('"so_far":"s"')  # a line of compact JSON
    expect(page.locator("#answer")).to_have_attribute("aria-busy", "false", timeout=10_000)
    # Replayed and followed: every letter once, however many were seen before the reload.
    assert seen < len(word)
    expect(chunks).to_have_count(len(word))
    expect(page.get_by_label("Input (JSON)")).to_have_value(re.compile(word))  # as it was sent
    output = page.locator("#app-output")
    expect(output).to_contain_text('"so_far": "streaming"')  # indented JSON
    assert json.loads(output.inner_text()) == {"so_far": word, "left": 0}
    assert json.loads(chunks.last.inner_text()) == {"so_far": word, "left": 0}
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert (job["kind"], job["app"], job["result"]) == (
        "app",
        "spell",
        {"output": {"so_far": word, "left": 0}},
    )
    screenshots(page, "ask-app-en")
    page.set_viewport_size({"width": 390, "height": 860})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 860})

    page.goto("/ui/#/jobs?kind=app")
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    expect(row.locator('[data-field="kind"]')).to_have_text("app · spell")
    kinds = page.locator('#jobs-table [data-field="kind"]').all_inner_texts()
    assert kinds and all(k.startswith("app") for k in kinds), kinds
    row.locator("a").click()
    expect(page.locator("#job-output")).to_contain_text('"so_far": "streaming"')
    expect(page.locator('#job-timeline li[data-type="chunk"]')).to_have_count(len(word))
    expect(page.locator('#job-timeline li[data-type="chunk"]').last).to_contain_text("streaming")
    page.goto("/ui/#/ops")  # an app's queue shows, even while empty
    expect(page.locator('#ops-queues tr[data-queue="spell"] td[data-field="depth"]')).to_have_text(
        "0"
    )


def test_app_with_text_input_streams_tokens_and_cancels(page: Page, api: httpx.Client) -> None:
    pick_app(page, "echo")
    expect(page.get_by_label("Input (text)")).to_have_value("")
    sentence = " ".join(f"tok{i}" for i in range(40)) + "."
    job_id = submit_app_input(page, "echo", f"{sentence} The mock answers the first sentence.")
    tokens = page.locator("#app-tokens")
    expect(tokens).to_contain_text(re.compile(r"tok\d+ tok\d+"))
    expect(page.locator("#app-output")).to_have_text(f"{sentence} [1]", timeout=15_000)
    expect(tokens).to_have_text(f"{sentence} [1]")
    assert api.get(f"/v1/jobs/{job_id}").json()["result"] == {"output": f"{sentence} [1]"}
    # On its page, the 40-odd chunks of the text parser are summed up in one line.
    page.goto(f"/ui/#/jobs/{job_id}")
    expect(page.locator("#job-output")).to_have_text(f"{sentence} [1]")
    expect(page.locator('#job-timeline li[data-type="chunk"]')).to_have_count(1)
    expect(page.locator('#job-timeline li[data-type="chunk"]')).to_contain_text("chunks streamed")
    # Cancel, as for answers.
    job_id = submit_app_input(page, "spell", '{"word": "cancelled", "pause_s": 0.5}')
    expect(page.locator("#app-chunks li").first).to_be_attached()
    workers = api.get("/v1/ops/overview").json()["workers"]
    running = {j["job_id"]: j for w in workers for j in w["jobs"]}
    assert (running[job_id]["kind"], running[job_id]["app"]) == ("app", "spell")
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#ask-notice")).to_contain_text("cancelled")
    assert wait_job(api, job_id)["status"] == "cancelled"


def test_app_input_errors_are_named(new_context: ContextFactory, service: str) -> None:
    """The API's 422 names the field; JSON that does not parse is caught before sending.
    (A page of its own: the browser logs the 422 as an error, which the shared page rejects.)"""
    context = new_context(service, "en-US")
    page = context.new_page()
    try:
        pick_app(page, "spell")
        submit = page.get_by_role("button", name="Ask", exact=True)
        page.locator("#ask-input").fill('{"word": ""}')
        submit.click()
        expect(page.locator("#ask-notice")).to_contain_text("input.word")
        page.locator("#ask-input").fill("{not json")
        submit.click()
        expect(page.locator("#ask-notice")).to_contain_text("not valid JSON")
        assert "job=" not in page.url
    finally:
        context.close()


def test_model_class_takes_the_question_form(page: Page, api: httpx.Client) -> None:
    pick_app(page, "rag-large")
    expect(page.get_by_label("Input (JSON)")).to_be_hidden()
    page.get_by_label("Collection").select_option(COLLECTION)
    page.get_by_label("Question").fill("What is the guest Wi-Fi network called?")
    with page.expect_request(lambda r: r.method == "POST" and "/v1/apps/" in r.url) as sent:
        page.get_by_role("button", name="Ask", exact=True).click()
    assert sent.value.url.endswith("/v1/apps/rag-large/jobs")
    page.wait_for_url(re.compile(r"app=rag-large&job="))
    job = wait_job(api, job_id_in_url(page))
    assert (job["kind"], job["app"], job["query"]) == (
        "app",
        "rag-large",
        "What is the guest Wi-Fi network called?",
    )
    expect(page.locator("#answer")).to_have_text(job["result"]["output"]["answer"].strip())
    expect(page.locator("#answer button.cite").first).to_be_visible()
