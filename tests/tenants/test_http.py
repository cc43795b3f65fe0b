"""API keys and tenants over real HTTP: two API processes, real PostgreSQL, the mock LLM.

The 401 and cross-tenant tables are built from ``/openapi.json``, so a route added later is
covered without touching this file (and must be listed here on purpose to be exempt).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest

from support import child_env, ragserve_command
from tenants.helpers import DB_PASSWORD, LLM_KEY, Cluster

OPEN_ROUTES = {"/healthz", "/readyz", "/metrics"}
"""No key needed (docs/SECURITY.md says how to keep /metrics private)."""

NOT_404_ACROSS_TENANTS = {
    ("post", "/v1/collections/{name}/documents"): 422,
    ("post", "/v1/apps/{name}/jobs"): 422,
}
"""Routes that, given another tenant's collection name, rightly act on the caller's own
collection of that name instead of answering 404: an upload creates it (called here without a
body, it answers 422 for the missing documents). An app's name names no tenant's data (apps
are the deployment's): without a body, 422 as well."""

QUESTION = "How many days of paid annual leave do full-time employees get?"


BODIES = {
    ("post", "/v1/collections/{name}/search"): {"query": "annual leave"},
}
"""Routes whose 404 comes after the body is validated: sent with a valid body."""


def spec_of(cluster: Cluster) -> dict[str, Any]:
    spec: dict[str, Any] = httpx.get(f"{cluster.urls[0]}/openapi.json").raise_for_status().json()
    return spec


def operations(cluster: Cluster) -> list[tuple[str, str]]:
    return [(method, path) for path, item in spec_of(cluster)["paths"].items() for method in item]


def openai_operations(cluster: Cluster) -> set[tuple[str, str]]:
    """The OpenAI door's routes: their errors are in OpenAI's shape (docs/OPENAI.md)."""
    paths = spec_of(cluster)["paths"].items()
    return {(m, p) for p, item in paths for m, op in item.items() if "openai" in op["tags"]}


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)


def call(
    client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    if method == "get" and path.endswith("/events"):  # a stream: only its status matters
        with client.stream(method, path) as response:
            return response
    return client.request(method, path, json=body)


def ask(client: httpx.Client, collection: str, query: str = QUESTION) -> dict[str, Any]:
    response = client.post("/v1/ask", json={"query": query, "collection": collection, "wait_s": 30})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def test_every_route_but_the_open_ones_needs_a_valid_key(cluster: Cluster) -> None:
    ops = operations(cluster)
    openai_shaped = openai_operations(cluster)
    assert ("post", "/v1/chat/completions") in openai_shaped
    values = {
        "job_id": str(uuid.uuid4()),
        "document_id": str(uuid.uuid4()),
        "name": "hr",
        "model_id": "hr",
    }
    guarded = [(m, p) for m, p in ops if p not in OPEN_ROUTES]
    assert len(guarded) >= 9, ops
    for replica in (0, 1):
        with cluster.client(None, replica) as anonymous, cluster.client(None, replica) as wrong:
            wrong.headers["Authorization"] = "Bearer rsk_not-a-key"
            for method, path in guarded:
                for client in (anonymous, wrong):
                    response = call(client, method, fill(path, values))
                    assert response.status_code == 401, (method, path, response.text)
                    assert response.headers["www-authenticate"] == "Bearer"
                    if (method, path) in openai_shaped:
                        assert response.json()["error"]["type"] == "authentication_error"
                    elif not path.endswith("/events"):
                        assert response.json()["error"]["type"] == "Unauthorized"
            for path in OPEN_ROUTES:
                assert anonymous.get(path).status_code == 200, path


def test_another_tenants_ids_and_collections_answer_404(cluster: Cluster) -> None:
    seeded = cluster.seeded
    values = {
        "job_id": seeded["a_job"],
        "document_id": seeded["a_document"],
        "name": "a-only",
        "model_id": "a-only",
    }
    with_ids = [(m, p) for m, p in operations(cluster) if "{" in p]
    assert {p for _, p in with_ids} >= {
        "/v1/jobs/{job_id}",
        "/v1/collections/{name}/documents/{document_id}",
    }
    with cluster.client("b") as b:
        for method, path in with_ids:
            expected = NOT_404_ACROSS_TENANTS.get((method, path), 404)
            response = call(b, method, fill(path, values), BODIES.get((method, path)))
            assert response.status_code == expected, (method, path, response.text)
        # A question on another tenant's collection: that collection does not exist for b.
        job = ask(b, "a-only", "What is the guest Wi-Fi called?")
        assert (job["status"], job["error"]["type"]) == ("failed", "NotFound"), job
        assert all(j["tenant"] == "b" for j in b.get("/v1/jobs").json()["jobs"])
        assert "a-only" not in {c["name"] for c in b.get("/v1/collections").json()["collections"]}
    with cluster.client("a") as a:  # nothing of a's was touched
        assert a.get(f"/v1/jobs/{seeded['a_job']}").json()["status"] == "succeeded"
        documents = a.get("/v1/collections/a-only/documents").json()["documents"]
        assert [d["document_id"] for d in documents] == [seeded["a_document"]]


def test_two_tenants_own_hr_and_never_share_answers(cluster: Cluster) -> None:
    with cluster.client("a") as a, cluster.client("b", replica=1) as b:
        first_a = ask(a, "hr")
        assert first_a["status"] == "succeeded" and not first_a["cached"]
        first_b = ask(b, "hr")  # the same question, after a's answer is cached
        assert first_b["status"] == "succeeded" and not first_b["cached"], first_b
        assert "25 days" in first_a["result"]["answer"]
        assert "12 days" in first_b["result"]["answer"]
        assert all("Tenant B" in s["text"] for s in first_b["result"]["sources"])
        assert all("Tenant A" in s["text"] for s in first_a["result"]["sources"])
        again_a = ask(a, "hr")
        assert again_a["cached"] and again_a["result"] == first_a["result"]
        again_b = ask(b, "hr")
        assert again_b["cached"] and "12 days" in again_b["result"]["answer"]


def owners(client: httpx.Client) -> set[tuple[str, str]]:
    collections = client.get("/v1/collections").json()["collections"]
    return {(c["tenant"], c["name"]) for c in collections}


def test_an_admin_sees_every_tenant_and_can_act_as_one(cluster: Cluster) -> None:
    with cluster.client("admin") as admin:
        tenants = {
            j["tenant"] for j in admin.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
        }
        assert {"a", "b"} <= tenants
        assert admin.get(f"/v1/jobs/{cluster.seeded['a_job']}").status_code == 200
        owned = {
            (c["tenant"], c["name"]) for c in admin.get("/v1/collections").json()["collections"]
        }
        assert {("a", "hr"), ("b", "hr"), ("a", "a-only")} <= owned
        admin.headers["X-Ragserve-Tenant"] = "b"
        as_b = {
            (c["tenant"], c["name"]) for c in admin.get("/v1/collections").json()["collections"]
        }
        assert as_b == {("b", "hr")}
        assert admin.get(f"/v1/jobs/{cluster.seeded['a_job']}").status_code == 404
        assert "12 days" in ask(admin, "hr")["result"]["answer"]
    with cluster.client("a", **{"X-Ragserve-Tenant": "b"}) as a:
        response = a.get("/v1/jobs")
        assert response.status_code == 403 and response.json()["error"]["type"] == "Forbidden"


def keys_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ragserve_command("keys", *args),
        env=child_env({**cluster.env, "COLUMNS": "200"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_keys_cli_and_revocation_within_seconds_on_every_replica(cluster: Cluster) -> None:
    created = keys_cli(cluster, "create", "--tenant", "c")
    key = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"rsk_[A-Za-z0-9_-]{43}", key), created.stdout
    key_id = re.search(r"created key (\d+) for tenant 'c'", created.stdout)
    assert key_id is not None, created.stdout
    listed = keys_cli(cluster, "list").stdout
    assert key not in listed and key[:12] in listed
    assert not any(k in listed for k in cluster.keys.values())
    clients = [
        httpx.Client(base_url=u, headers={"Authorization": f"Bearer {key}"}) for u in cluster.urls
    ]
    try:
        assert [c.get("/v1/jobs").status_code for c in clients] == [200, 200]  # now cached
        keys_cli(cluster, "revoke", key_id[1])
        revoked_at = time.monotonic()
        refused_after: list[float] = []
        for client in clients:
            while client.get("/v1/jobs").status_code != 401:
                assert time.monotonic() - revoked_at < 5, "still accepted 5 s after revocation"
                time.sleep(0.05)
            refused_after.append(time.monotonic() - revoked_at)
        print(f"revocation refused after {refused_after} s (RAGSERVE_AUTH_CACHE_S=2)")
    finally:
        for client in clients:
            client.close()
    row = next(line for line in keys_cli(cluster, "list").stdout.splitlines() if key[:12] in line)
    assert len(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row)) == 2, row  # created, revoked


def test_secrets_never_reach_the_logs(cluster: Cluster) -> None:
    with cluster.client("a") as a:
        ask(a, "hr", "A question that reaches the LLM with its key?")
        a.post("/v1/jobs", json={"query": ""})  # a 422
    with cluster.client(None) as anonymous:
        anonymous.get("/v1/jobs", headers={"Authorization": "Bearer rsk_guessed"})
    for proc in cluster.procs:
        log = proc.log()
        assert "api ready" in log
        for secret in [LLM_KEY, DB_PASSWORD, *cluster.keys.values(), "rsk_guessed"]:
            assert secret not in log, f"{secret[:6]}... in the log of {proc.log_path.name}"


def test_a_public_listener_needs_auth_or_an_explicit_off(cluster: Cluster) -> None:
    env = {k: v for k, v in cluster.env.items() if k != "RAGSERVE_AUTH"}
    for command in ("serve", "api"):
        done = subprocess.run(
            ragserve_command(command, "--host", "0.0.0.0", "--port", "1"),
            env=child_env(env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "RAGSERVE_AUTH=api_key" in done.stderr and "RAGSERVE_AUTH=off" in done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_auth(host: str) -> None:
    from ragserve.settings import Settings

    Settings().check_listener(host)


def test_explicit_off_allows_a_public_listener() -> None:
    from ragserve.errors import ConfigurationError
    from ragserve.settings import Settings

    Settings(auth="off").check_listener("0.0.0.0")
    Settings(auth="api_key").check_listener("0.0.0.0")
    with pytest.raises(ConfigurationError, match="RAGSERVE_AUTH"):
        Settings().check_listener("10.0.0.5")


def test_cli_clients_send_ragserve_api_key(cluster: Cluster) -> None:
    def jobs_list(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ragserve_command("jobs", "list", "--url", cluster.urls[1]),
            env=child_env({**env, "COLUMNS": "200"}),
            capture_output=True,
            text=True,
            timeout=60,
        )

    with_key = jobs_list(RAGSERVE_API_KEY=cluster.keys["b"])
    assert with_key.returncode == 0, with_key.stderr
    without = jobs_list()
    assert without.returncode == 1 and "API key" in without.stderr, without


def test_settings_never_show_secrets() -> None:
    from ragserve.logs import redact_url
    from ragserve.settings import Settings

    url = "postgresql://app:pg-pw-1@db:5432/rag?sslmode=verify-full&sslpassword=pw-2"
    settings = Settings(database_url=url, llm_api_key="sk-3", api_key="rsk_4")
    shown = f"{settings!r} {settings}"
    assert not any(secret in shown for secret in ("pg-pw-1", "pw-2", "sk-3", "rsk_4")), shown
    redacted = redact_url(url)
    assert "pg-pw-1" not in redacted and "pw-2" not in redacted
    assert redacted.startswith("postgresql://app:***@db:5432/rag?sslmode=verify-full")


def wait_terminal(client: httpx.Client, job_id: str) -> dict[str, Any]:
    waited = client.get(f"/v1/jobs/{job_id}").json()
    deadline = time.monotonic() + 30
    while waited["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, waited
        time.sleep(0.1)
        waited = client.get(f"/v1/jobs/{job_id}").json()
    return waited


def test_app_jobs_run_on_the_callers_collections(cluster: Cluster) -> None:
    body: dict[str, Any] = {"input": {"query": QUESTION, "collection": "hr"}}
    answers = {}
    for who in ("a", "b"):
        with cluster.client(who) as client:
            smuggled = {"input": {**body["input"], "tenant": "b"}}  # the key says whose it is
            assert client.post("/v1/apps/rag/jobs", json=smuggled).status_code == 422
            response = client.post("/v1/apps/rag/jobs", json=body)
            assert response.status_code == 202, response.text
            job = wait_terminal(client, response.json()["job_id"])
            assert (job["tenant"], job["kind"], job["status"]) == (who, "app", "succeeded"), job
            answers[who] = job
    # Each tenant's own hr, and no shared cache.
    assert "25 days" in answers["a"]["result"]["output"]["answer"]
    assert "12 days" in answers["b"]["result"]["output"]["answer"]
    with cluster.client("b") as b:
        assert b.get(f"/v1/jobs/{answers['a']['job_id']}").status_code == 404
        assert b.get(f"/v1/jobs/{answers['a']['job_id']}/timeline").status_code == 404
        listed = b.get("/v1/jobs", params={"kind": "app", "limit": 1000}).json()["jobs"]
        assert [j["job_id"] for j in listed] == [answers["b"]["job_id"]]
    with cluster.client("a") as a:
        timeline = a.get(f"/v1/jobs/{answers['a']['job_id']}/timeline")
        assert timeline.status_code == 200 and timeline.json()["attempts"], timeline.text


def test_operations_views_are_per_tenant_and_whole_for_admins(cluster: Cluster) -> None:
    with cluster.client("b") as b:
        failed = ask(b, "missing-b", "Is anything here?")
        assert failed["status"] == "failed", failed
    seen: dict[str, dict[str, Any]] = {}
    for who in ("a", "b", "admin"):
        with cluster.client(who) as client:
            jobs = client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
            overview = client.get("/v1/ops/overview", params={"dead_letters": 200}).json()
            minutes = client.get("/v1/ops/throughput", params={"minutes": 60}).json()
            seen[who] = {"jobs": jobs, "overview": overview, "throughput": minutes}
            # The counts and the per-minute submissions are exactly the jobs this key lists.
            assert sum(overview["statuses"].values()) == len(jobs), (who, overview["statuses"])
            submitted = sum(m["submitted"] for m in minutes["buckets"])
            assert submitted == len(jobs), who
            dead = {j["job_id"] for j in overview["dead_letters"]}
            assert dead == {j["job_id"] for j in jobs if j["status"] == "failed"}, who
            assert overview["queues"] and overview["workers"]  # shared: every key sees them
    assert {j["tenant"] for j in seen["a"]["jobs"]} == {"a"}
    assert {j["tenant"] for j in seen["b"]["jobs"]} == {"b"}
    assert failed["job_id"] in {j["job_id"] for j in seen["b"]["overview"]["dead_letters"]}
    assert failed["job_id"] in {j["job_id"] for j in seen["admin"]["overview"]["dead_letters"]}
    assert len(seen["admin"]["jobs"]) >= len(seen["a"]["jobs"]) + len(seen["b"]["jobs"])


def test_the_openai_door_serves_the_callers_collections(cluster: Cluster) -> None:
    models = {}
    for who in ("a", "b"):
        with cluster.client(who) as client:
            models[who] = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert models == {"a": {"hr", "a-only"}, "b": {"hr"}}
    chat = {"messages": [{"role": "user", "content": QUESTION}]}
    with cluster.client("b", replica=1) as b:
        refused = b.post("/v1/chat/completions", json={**chat, "model": "a-only"})
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "model_not_found"
        answered = b.post("/v1/chat/completions", json={**chat, "model": "hr"})
        assert answered.status_code == 200, answered.text
        assert "12 days" in answered.json()["choices"][0]["message"]["content"]
        job_id = answered.headers["X-Ragserve-Job-Id"]
        assert b.get(f"/v1/jobs/{job_id}").json()["tenant"] == "b"
        found = b.post("/v1/collections/hr/search", json={"query": "paid annual leave"})
        assert found.status_code == 200, found.text
        assert found.json()["results"]
        assert all("Tenant B" in r["text"] for r in found.json()["results"])
    with cluster.client("a") as a:
        assert a.get(f"/v1/jobs/{job_id}").status_code == 404
        streamed = a.post("/v1/chat/completions", json={**chat, "model": "hr", "stream": True})
        assert streamed.status_code == 200, streamed.text
        assert "25 days" in streamed_content(streamed.text)


def streamed_content(body: str) -> str:
    """The answer text of a streamed chat completion (its chunks' content deltas)."""
    chunks = [
        json.loads(line[len("data: ") :])
        for line in body.splitlines()
        if line.startswith("data: {")
    ]
    return "".join(
        choice["delta"].get("content") or "" for c in chunks for choice in c.get("choices", [])
    )


def test_langchain_helpers_send_the_key(cluster: Cluster) -> None:
    from ragserve.client import ApiError
    from ragserve.langchain import RagserveRetriever, RagserveRunnable

    url = cluster.urls[1]
    retriever = RagserveRetriever.over_http(url, "hr", api_key=cluster.keys["b"])
    assert cluster.keys["b"] not in repr(retriever)
    documents = retriever.invoke("paid annual leave")
    assert documents and all("Tenant B" in d.page_content for d in documents)
    with pytest.raises(ApiError) as refused:
        RagserveRetriever.over_http(url, "hr").invoke("paid annual leave")
    assert refused.value.status == 401
    answer = RagserveRunnable(url, "hr", api_key=cluster.keys["a"]).invoke(QUESTION)
    assert "25 days" in answer["answer"]


def test_usage_is_counted_and_shown_per_tenant(cluster: Cluster) -> None:
    with cluster.client("a") as a:
        ask(a, "hr", "Who counts the tokens of tenant A?")
    rows = {}
    for who in ("a", "b", "admin"):
        with cluster.client(who) as client:
            response = client.get("/v1/usage")
            assert response.status_code == 200, response.text
            rows[who] = response.json()["usage"]
    assert {r["tenant"] for r in rows["a"]} == {"a"} and rows["a"][-1]["jobs"] >= 1
    assert {r["tenant"] for r in rows["b"]} == {"b"}
    assert {"a", "b"} <= {r["tenant"] for r in rows["admin"]}
    with cluster.client("admin", **{"X-Ragserve-Tenant": "b"}) as admin_as_b:
        assert admin_as_b.get("/v1/usage").json()["usage"] == rows["b"]
