"""Word (.docx): paragraphs and tables in the order they appear."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from ragserve.errors import DocumentError


def load_docx(data: bytes) -> tuple[str, dict[str, Any]]:
    """Paragraphs and tables in body order; one table row per line, cells joined by `` | ``."""
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(_docx_blocks(document))
        title = document.core_properties.title
    except Exception as exc:  # zipfile, lxml and python-docx all raise their own types
        raise DocumentError(f"corrupt DOCX: {type(exc).__name__}: {exc}") from exc
    metadata: dict[str, Any] = {"format": "docx"}
    if title and title.strip():
        metadata["title"] = title.strip()
    return "\n\n".join(blocks), metadata


def _docx_blocks(document: Any) -> Iterator[str]:
    """Yield the text of each top-level paragraph and table, in the order they appear."""
    from docx.table import Table

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            yield _docx_table(item)
        else:
            yield item.text


def _docx_table(table: Any) -> str:
    """A table as lines of ``cell | cell``; merged cells are reported once, not repeated."""
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: list[Any] = []
        for cell in row.cells:
            if any(cell._tc is tc for tc in seen):  # horizontally merged: same cell again
                continue
            seen.append(cell._tc)
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)
