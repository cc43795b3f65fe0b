"""``ragserve ingest``: walk paths, ingest in-process with a progress bar, print a summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragserve.kb.ingest import DocumentResult, IngestItem
from ragserve.kb.loaders import SUPPORTED_EXTENSIONS
from ragserve.names import DEFAULT_TENANT
from ragserve.services import open_services
from ragserve.settings import Settings


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """Files of ``paths``; folders walked recursively in a stable order, hidden entries and
    unsupported types skipped (a file named explicitly is always tried, and may fail)."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in found.relative_to(path).parts)
                if found.is_file() and not hidden and found.suffix.lower() in SUPPORTED_EXTENSIONS:
                    yield found
        else:
            yield path


async def ingest_paths(
    settings: Settings,
    paths: list[Path],
    collection: str,
    metadata: dict[str, Any],
    console: Console,
    tenant: str = DEFAULT_TENANT,
) -> int:
    """Ingest; print one line per file; return how many failed."""
    items = [IngestItem(source=str(p), path=p, metadata=metadata) for p in iter_files(paths)]
    if not items:
        console.print("no supported files found")
        return 1
    async with open_services(settings) as services:
        with Progress(
            TextColumn("[bold]ingesting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
        ) as progress:
            task = progress.add_task("", total=len(items))

            def advance(result: DocumentResult) -> None:
                progress.update(task, advance=1, description=Path(result.source).name)

            results = await services.ingestor.ingest(
                collection, items, on_document=advance, tenant=tenant
            )
    print_summary(results, console)
    return sum(r.status == "failed" for r in results)


def print_summary(results: list[DocumentResult], console: Console) -> None:
    table = Table("status", "chunks", "source", "error", box=None)
    style = {"ingested": "green", "unchanged": "cyan", "failed": "red"}
    for r in results:
        table.add_row(f"[{style[r.status]}]{r.status}[/]", str(r.chunks), r.source, r.error or "")
    console.print(table)
    counts = {s: sum(r.status == s for r in results) for s in style}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))
