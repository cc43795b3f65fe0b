"""Turning a loader's view of a document (headings, paragraphs, tables) into located blocks.

Loaders that see structure (Markdown, HTML, DOCX) report it as a flat sequence of
:class:`Heading`, :class:`Paragraph` and :class:`Table` items in reading order;
:func:`build_blocks` tracks the heading path and cuts a new :class:`TextBlock` at every heading
and around every table, so each block has one section (and tables their number).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ragserve.kb.loaders.text import normalize_text
from ragserve.kb.types import Location, TextBlock


class Extracted(NamedTuple):
    """What a loader returns: the whole text, loader metadata, and the text cut by location."""

    text: str
    metadata: dict[str, Any]
    blocks: tuple[TextBlock, ...] = ()


@dataclass(frozen=True)
class Heading:
    level: int
    """1 for the outermost (``#``, ``<h1>``, "Heading 1"); a title counts as 0."""
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Page:
    """The text that follows is on this (1-based) page; headings carry on across pages."""

    number: int


@dataclass(frozen=True)
class Table:
    rows: tuple[str, ...]
    """Each row's cells joined by `` | ``; the first one is taken as the header."""


Content = Heading | Paragraph | Table
Item = Content | Page


def build_blocks(items: Iterable[Item], *, keep_indent: bool = False) -> tuple[TextBlock, ...]:
    """Blocks of text, each under one heading path; empty headings and paragraphs are skipped.

    Text before the first heading has no section (``None``). A heading replaces every open
    heading of its level or deeper, so ``# A``, ``## B``, ``## C`` gives ``A › B`` then ``A › C``.
    """
    blocks: list[TextBlock] = []
    path: list[tuple[int, str]] = []
    pending: list[str] = []
    tables = 0
    page: int | None = None

    def section() -> tuple[str, ...] | None:
        return tuple(text for _, text in path) or None

    def flush() -> None:
        text = normalize_text("\n\n".join(pending), keep_indent=keep_indent)
        pending.clear()
        if text:
            blocks.append(TextBlock(text, Location(page=page, section=section())))

    for item in items:
        if isinstance(item, Page):
            flush()
            page = item.number
        elif isinstance(item, Heading):
            title = " ".join(item.text.split())
            if not title:
                continue
            flush()
            while path and path[-1][0] >= item.level:
                path.pop()
            path.append((item.level, title))
        elif isinstance(item, Paragraph):
            pending.append(item.text)
        else:
            rows = tuple(row for row in (" ".join(r.split()) for r in item.rows) if row.strip(" |"))
            if not rows:
                continue
            flush()
            tables += 1
            header = rows[0] if len(rows) > 1 else None
            body = rows[1:] if header is not None else rows
            location = Location(page=page, section=section(), table=tables)
            blocks.append(TextBlock("\n".join(rows), location, rows=body, header=header))
    flush()
    return tuple(blocks)
