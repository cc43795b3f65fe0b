"""Word (.docx): paragraphs and tables in the order they appear, headings as section paths."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from ragserve.errors import DocumentError
from ragserve.kb.loaders.structure import (
    Content,
    Extracted,
    Heading,
    Paragraph,
    Table,
    build_blocks,
)

# Word's built-in heading styles ("Heading 1" .. "Heading 9", localised copies keep the
# digit) and the title style; the outline level of a custom style is read below.
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


def load_docx(data: bytes) -> Extracted:
    """Paragraphs and tables in body order; one table row per line, cells joined by `` | ``."""
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        items = list(_docx_items(document))
        title = document.core_properties.title
    except Exception as exc:  # zipfile, lxml and python-docx all raise their own types
        raise DocumentError(f"corrupt DOCX: {type(exc).__name__}: {exc}") from exc
    metadata: dict[str, Any] = {"format": "docx"}
    if title and title.strip():
        metadata["title"] = title.strip()
    text = "\n\n".join(_item_text(item) for item in items)
    return Extracted(text, metadata, build_blocks(items))


def _item_text(item: Content) -> str:
    return "\n".join(item.rows) if isinstance(item, Table) else item.text


def _docx_items(document: Any) -> Iterator[Content]:
    """Each top-level paragraph (a heading or not) and table, in the order they appear."""
    from docx.table import Table as DocxTable

    for item in document.iter_inner_content():
        if isinstance(item, DocxTable):
            yield Table(tuple(_docx_rows(item)))
            continue
        level = _heading_level(item)
        yield Paragraph(item.text) if level is None else Heading(level, item.text)


def _heading_level(paragraph: Any) -> int | None:
    """1.. for a heading paragraph, 0 for the document title, None for body text."""
    style = paragraph.style
    while style is not None:
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        match = _HEADING_STYLE.match(name)
        if match:
            return int(match.group(1))
        style = style.base_style  # a custom style based on "Heading 2" is a heading too
    return None


def _docx_rows(table: Any) -> Iterator[str]:
    """A table as rows of ``cell | cell``; merged cells are reported once, not repeated."""
    for row in table.rows:
        cells: list[str] = []
        seen: list[Any] = []
        for cell in row.cells:
            if any(cell._tc is tc for tc in seen):  # horizontally merged: same cell again
                continue
            seen.append(cell._tc)
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            yield " | ".join(cells)
