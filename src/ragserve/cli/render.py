"""Jobs, sources and ingest summaries as terminal tables (``rich``), from API bodies."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from ragserve.kb.types import Location, format_location

_STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def print_sources(job: dict[str, Any], console: Console) -> None:
    """The passages an answer cites, numbered as the ``[n]`` citations in the answer.

    Starts with a blank line, to set the table apart from the answer printed just before.
    Each source is named with where in the document the passage is, when the server knows:
    ``handbook.pdf p. 12``, ``guide.md · Leave policy › Annual leave``.
    """
    sources = (job.get("result") or {}).get("sources") or []
    console.print()
    if not sources:
        console.print("[dim]no sources[/dim]")
        return
    table = Table(title="Sources", title_justify="left", show_lines=False, expand=False)
    table.add_column("#", justify="right", style="bold")
    table.add_column("source", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("excerpt", overflow="fold", max_width=70)
    for n, source in enumerate(sources, start=1):
        score = source.get("score")
        table.add_row(
            str(n),
            Text(format_location(str(source.get("source", "")), _location(source))),
            f"{score:.3f}" if isinstance(score, int | float) else "",
            Text(_excerpt(str(source.get("text", "")))),
        )
    console.print(table)


def _location(source: dict[str, Any]) -> Location:
    """The source's ``location``; an older server sends none, which reads as unknown."""
    return Location.from_dict(source.get("location"))


def _excerpt(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _status(status: str | None) -> Text:
    return Text(str(status), style=_STATUS_STYLE.get(str(status), ""))


def print_job(job: dict[str, Any], console: Console) -> None:
    """One job in full: its fields, then its answer and sources, its ingest summary, or an
    app's output (text as it is, anything else as indented JSON)."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column(overflow="fold")
    fields.add_row("job", Text(str(job.get("job_id"))))
    fields.add_row("kind", Text(str(job.get("kind", ""))))
    if job.get("app"):
        fields.add_row("app", Text(str(job["app"])))
    fields.add_row("status", _status(job.get("status")))
    if job.get("query"):
        fields.add_row("query", Text(str(job["query"])))
    fields.add_row("collection", Text(str(job.get("collection", ""))))
    fields.add_row("attempts", str(job.get("attempts", "")))
    if job.get("cached"):
        fields.add_row("cached", "yes")
    for key in ("created_at", "started_at", "finished_at"):
        if job.get(key):
            fields.add_row(key.removesuffix("_at"), str(job[key]))
    error = job.get("error")
    if error:
        fields.add_row("error", Text(f"{error.get('type')}: {error.get('message')}", style="red"))
    console.print(fields)
    result = job.get("result") or {}
    if "answer" in result:
        console.print()
        console.print(Text(str(result["answer"])))
        print_sources(job, console)
    elif "documents" in result:
        console.print()
        _print_ingest(result["documents"], console)
    elif "output" in result:
        console.print()
        output = result["output"]
        if isinstance(output, str):
            console.print(Text(output))
        else:
            console.print(JSON.from_data(output, ensure_ascii=False))


def _print_ingest(documents: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Documents", title_justify="left")
    table.add_column("source", overflow="fold")
    table.add_column("status")
    table.add_column("chunks", justify="right")
    table.add_column("error", overflow="fold")
    styles = {"ingested": "green", "unchanged": "dim", "failed": "red"}
    for doc in documents:
        status = str(doc.get("status"))
        table.add_row(
            Text(str(doc.get("source", ""))),
            Text(status, style=styles.get(status, "")),
            str(doc.get("chunks", "")),
            Text(str(doc.get("error") or "")),
        )
    console.print(table)


def print_job_table(jobs: list[dict[str, Any]], console: Console) -> None:
    """Jobs one per line, newest first as the API returns them."""
    if not jobs:
        console.print("[dim]no jobs[/dim]")
        return
    id_width = max(len(str(job.get("job_id"))) for job in jobs)
    with_created = console.width >= 100  # on a narrow terminal the query needs the room
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # A fixed width keeps ids whole when the query wraps; on a very narrow terminal the id is
    # folded, never cropped, since users copy it into `jobs show`.
    table.add_column("job", width=id_width, overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    if with_created:
        table.add_column("created")
    table.add_column("query", max_width=60)
    for job in jobs:
        created = str(job.get("created_at") or "")[:19].replace("T", " ")
        table.add_row(
            Text(str(job.get("job_id"))),
            Text(str(job.get("kind", ""))),
            _status(job.get("status")),
            str(job.get("attempts", "")),
            *([created] if with_created else []),
            Text(str(job.get("query") or "")),
        )
    console.print(table)
