"""The ``ragserve`` command. Each command builds what it needs from ``Settings`` and runs it.

Exit codes: 0 success; 1 a failure of the work itself (a file that could not be ingested, a
job that failed, a bad request); 2 nothing listening at the API URL, or ``serve``/``api``
refusing a non-loopback address without authentication.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ragserve.cli.answer import stream_answer
from ragserve.cli.render import print_job, print_job_table, print_sources
from ragserve.client import ApiClient, ClientError, ServiceUnreachable
from ragserve.errors import ConfigurationError, RagserveError
from ragserve.logs import configure_logging
from ragserve.settings import Settings, load_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Asynchronous question answering over your own documents.",
)
jobs_app = typer.Typer(no_args_is_help=True, help="Inspect and steer jobs (HTTP client).")
db_app = typer.Typer(no_args_is_help=True, help="Database administration.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys (in-process on the database).")
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")

console = Console()
errors = Console(stderr=True, soft_wrap=True)

Host = Annotated[str, typer.Option(help="Interface to listen on.")]
Port = Annotated[int, typer.Option(help="TCP port to listen on.")]
UrlOption = Annotated[
    str | None, typer.Option("--url", envvar="RAGSERVE_URL", help="ragserve API URL.")
]
CollectionOption = Annotated[str, typer.Option(help="Collection to use.")]
AppOption = Annotated[
    list[str] | None,
    typer.Option(
        "--app",
        help="Serve a LangChain Runnable as an app: NAME=module:attribute (repeatable;"
        " added to RAGSERVE_APPS; docs/APPS.md).",
    ),
]
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:  # one line naming the RAGSERVE_* variable
        errors.print(f"invalid configuration: {exc}", markup=False)
        raise typer.Exit(1) from None


def _with_apps(
    settings: Settings, apps: list[str] | None, queues: list[str] | None = None
) -> Settings:
    """``--app`` flags join ``RAGSERVE_APPS``; ``--queue`` flags replace
    ``RAGSERVE_WORKER_QUEUES``."""
    from ragserve.jobs.apps import load_apps  # not for every command: it loads LangChain

    update: dict[str, str] = {}
    if apps:
        update["apps"] = ";".join([settings.apps or "", *apps])
    if queues:
        update["worker_queues"] = ",".join(queues)
    settings = settings.model_copy(update=update) if update else settings
    try:  # a typo in an app or a queue: one line, before anything starts
        load_apps(settings)
    except ConfigurationError as exc:
        errors.print(f"invalid configuration: {exc}", markup=False)
        raise typer.Exit(1) from None
    return settings


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed, else asyncio's own loop. (uvicorn's ``loop="auto"`` does
    not apply here: the server runs inside the loop we start.)"""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; typed errors become one line and exit code 1."""
    try:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            return runner.run(coro)
    except RagserveError as exc:
        errors.print(f"{exc.type}: {exc}", markup=False)
        raise typer.Exit(1) from None


# -- servers -----------------------------------------------------------------------------


@app.command()
def serve(host: Host = "127.0.0.1", port: Port = 8000, apps: AppOption = None) -> None:
    """API and an in-process worker: everything in one process."""
    from ragserve.server import run_server

    configure_logging()
    settings = _with_apps(_listening_settings(host), apps)
    _run(run_server(settings, host=host, port=port, run_worker=True))


@app.command()
def api(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    apps: AppOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="HTTP processes on this address (default RAGSERVE_API_WORKERS, 1); each one"
            " a whole API with its own database pool (docs/DEPLOY.md).",
        ),
    ] = None,
) -> None:
    """Only the HTTP API (scale it apart from the workers)."""
    from ragserve.server import run_server

    configure_logging()
    settings = _with_apps(_listening_settings(host), apps)
    processes = workers if workers is not None else settings.api_workers
    if processes > 1:
        from ragserve.api.processes import serve_api_processes

        raise typer.Exit(serve_api_processes(settings, host=host, port=port, workers=processes))
    _run(run_server(settings, host=host, port=port, run_worker=False))


def _listening_settings(host: str) -> Settings:
    """Settings of an API about to listen on ``host``; exit 2 if that would expose it
    without authentication (RAGSERVE_AUTH unset and ``host`` not loopback)."""
    settings = _settings()
    try:
        settings.check_listener(host)
    except ConfigurationError as exc:
        errors.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    return settings


@app.command()
def worker(
    health_port: Annotated[
        int | None,
        typer.Option(help="Serve /healthz and /readyz on this port (for orchestrator probes)."),
    ] = None,
    health_host: Annotated[str, typer.Option(help="Interface for the health port.")] = "0.0.0.0",
    apps: AppOption = None,
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            help="Serve only this queue (repeatable; a queue or an app name; default every"
            " queue: answer, ingest and each app's).",
        ),
    ] = None,
) -> None:
    """Only a worker: takes jobs from the queue; drains on SIGTERM."""
    from ragserve.server import run_worker

    configure_logging()
    settings = _with_apps(_settings(), apps, queues)
    _run(run_worker(settings, health_port=health_port, health_host=health_host))


# -- knowledge base ----------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively).")],
    collection: CollectionOption = "default",
    metadata: Annotated[
        str | None, typer.Option(help="JSON object stored with every document.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="The tenant that owns the collection.")] = "default",
) -> None:
    """Ingest files straight into the database (no upload, no service needed)."""
    from ragserve.cli.ingest import ingest_paths

    configure_logging("WARNING")
    extra = _json_object(metadata, "--metadata")
    failed = _run(ingest_paths(_settings(), paths, collection, extra, console, tenant))
    raise typer.Exit(1 if failed else 0)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the schema migrations (they also run at start-up)."""
    from ragserve.db.pool import Database

    async def go() -> list[str]:
        db = await Database.from_settings(_settings())
        try:
            return await db.open()
        finally:
            await db.close()

    configure_logging("WARNING")
    applied = _run(go())
    console.print("applied: " + ", ".join(applied) if applied else "schema is up to date")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="The key sees and manages every tenant.")
    ] = False,
) -> None:
    """Create an API key; prints it once, alone on the last line (only its hash is kept)."""
    from ragserve.cli.keys import create_key

    configure_logging("WARNING")
    _run(create_key(_settings(), tenant, admin, console))


@keys_app.command("list")
def keys_list() -> None:
    """List API keys: id, tenant, admin, prefix, created, revoked (never the key)."""
    from ragserve.cli.keys import list_keys

    configure_logging("WARNING")
    _run(list_keys(_settings(), console))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (keys list).")]) -> None:
    """Revoke an API key; every API process refuses it within RAGSERVE_AUTH_CACHE_S."""
    from ragserve.cli.keys import revoke_key

    configure_logging("WARNING")
    _run(revoke_key(_settings(), key_id, console))


@keys_app.command("budget")
def keys_budget(
    tenant: Annotated[str, typer.Option(help="The tenant whose budget is set.")],
    daily_tokens: Annotated[
        int | None,
        typer.Option(min=0, help="Tokens per UTC day (prompt + completion + embedding)."),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Back to RAGSERVE_DAILY_TOKEN_BUDGET.")
    ] = False,
) -> None:
    """Set a tenant's own daily token budget (replaces RAGSERVE_DAILY_TOKEN_BUDGET for it)."""
    from ragserve.cli.keys import set_budget

    if (daily_tokens is not None) == clear:
        raise typer.BadParameter("give --daily-tokens N or --clear (one of them)")
    configure_logging("WARNING")
    _run(set_budget(_settings(), tenant, daily_tokens, console))


# -- clients of the HTTP API -------------------------------------------------------------


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOption = "default",
    top_k: Annotated[int, typer.Option(help="Chunks to retrieve.")] = 4,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the job id and return.")
    ] = False,
    url: UrlOption = None,
) -> None:
    """Ask a question; streams the answer as it is generated, then prints the sources."""
    with _client(url) as client:
        accepted = client.submit(question, collection, top_k)
        if no_wait:
            console.print(accepted["job_id"])
            return
        job = stream_answer(client, accepted["job_id"], console)
        print_sources(job, console)
        raise typer.Exit(0 if job["status"] == "succeeded" else 1)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    url: UrlOption = None,
) -> None:
    """List jobs, newest first."""
    with _client(url) as client:
        print_job_table(client.list_jobs(status, limit), console)


@jobs_app.command("show")
def jobs_show(job_id: str, url: UrlOption = None) -> None:
    """Show one job, with its result or error."""
    with _client(url) as client:
        print_job(client.get_job(job_id), console)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, url: UrlOption = None) -> None:
    """Cancel a queued or running job."""
    with _client(url) as client:
        print_job(client.cancel(job_id), console)


@jobs_app.command("retry")
def jobs_retry(job_id: str, url: UrlOption = None) -> None:
    """Run a failed or cancelled job again."""
    with _client(url) as client:
        print_job(client.retry(job_id), console)


@app.command()
def demo(
    collection: CollectionOption = "demo",
) -> None:
    """Start the service in-process, ingest the bundled samples, ask the sample questions."""
    from ragserve.cli.demo import run_demo

    configure_logging("WARNING")
    ok = run_demo(_settings(), collection, console)
    raise typer.Exit(0 if ok else 1)


@contextmanager
def _client(url: str | None) -> Iterator[ApiClient]:
    """An ``ApiClient`` whose errors become one line and the contract's exit codes."""
    settings = _settings()
    key = settings.api_key.get_secret_value() if settings.api_key else None
    client = ApiClient(url or settings.url, api_key=key)
    try:
        yield client
    except ServiceUnreachable as exc:
        errors.print(_one_line(exc), markup=False)
        raise typer.Exit(2) from None
    except ClientError as exc:  # ApiError and stream failures
        errors.print(_one_line(exc), markup=False)
        raise typer.Exit(1) from None
    finally:
        client.close()


def _one_line(exc: ClientError) -> str:
    """The error and its notes (how long the client retried) on one line."""
    notes = "; ".join(getattr(exc, "__notes__", ()))
    return f"error: {exc}" + (f" ({notes})" if notes else "")


def _json_object(raw: str | None, name: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        errors.print(f"error: {name} must be a JSON object", markup=False)
        raise typer.Exit(1)
    return value
