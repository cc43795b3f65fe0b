"""Plain data shared by the knowledge base and the layers above it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LOCATION_KEY = "_location"
"""Where a chunk's location is kept inside its stored metadata (JSONB).

Namespaced with an underscore so that a user's own ``location`` metadata key is never clobbered;
:class:`RetrievedChunk` takes it out again, so users never see it among their metadata.
"""


@dataclass(frozen=True)
class Location:
    """Where a piece of text sits in its document.

    ``page`` is the 1-based PDF page; ``section`` the heading path, outermost first (Markdown,
    HTML, DOCX); ``table`` and ``row`` (both 1-based, ``row`` counting data rows below the
    header) are set when the text comes from a table, ``row`` being the first row of the chunk.
    """

    page: int | None = None
    section: tuple[str, ...] | None = None
    table: int | None = None
    row: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The API shape: ``page`` and ``section`` always, ``table``/``row`` when known."""
        out: dict[str, Any] = {
            "page": self.page,
            "section": list(self.section) if self.section else None,
        }
        if self.table is not None:
            out["table"] = self.table
        if self.row is not None:
            out["row"] = self.row
        return out

    def is_empty(self) -> bool:
        return self.page is None and not self.section and self.table is None

    @classmethod
    def from_dict(cls, data: object) -> Location:
        """Read back what :meth:`as_dict` stored; anything malformed reads as unknown."""
        if not isinstance(data, Mapping):
            return cls()
        section = data.get("section")
        headings = tuple(str(h) for h in section) if isinstance(section, list) and section else None
        return cls(
            page=_int_or_none(data.get("page")),
            section=headings,
            table=_int_or_none(data.get("table")),
            row=_int_or_none(data.get("row")),
        )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class TextBlock:
    """A run of a document's text that lies in one place: one page, one section, one table.

    Chunks are cut inside a block, never across two, so each chunk has one location. A table
    block has ``rows`` (each row's cells joined by `` | ``) and ``header`` (its first row,
    repeated at the top of every chunk cut from the table); its ``text`` is all of them.
    """

    text: str
    location: Location = field(default_factory=Location)
    rows: tuple[str, ...] = ()
    header: str | None = None


@dataclass(frozen=True)
class LoadedDocument:
    """The text a loader extracted from one file, before chunking.

    ``text`` is the whole document as one string (it is what decides "unchanged"); ``blocks``
    is the same content cut where its location changes. No blocks means one block of ``text``
    with an unknown location (plain text, API-submitted text).
    """

    source: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    blocks: tuple[TextBlock, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """One piece of a document as stored: its text and where it comes from."""

    text: str
    location: Location = field(default_factory=Location)

    def embedding_text(self) -> str:
        """What is embedded: the heading path on a line of its own, then the text.

        Headings give a chunk its context ("Annual leave" above "23 days a year") for
        retrieval, but they are not part of the stored text, so an extractive answer never
        quotes them.
        """
        if not self.location.section:
            return self.text
        return " › ".join(self.location.section) + "\n" + self.text


@dataclass(frozen=True)
class RetrievedChunk:
    """One chunk returned by retrieval, with its cosine similarity to the query.

    ``metadata`` is what the store holds, which includes the reserved :data:`LOCATION_KEY`;
    :attr:`location` reads it and :attr:`user_metadata` is the rest.
    """

    chunk_id: str
    document_id: str
    source: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> Location:
        return Location.from_dict(self.metadata.get(LOCATION_KEY))

    @property
    def user_metadata(self) -> dict[str, Any]:
        return {k: v for k, v in self.metadata.items() if k != LOCATION_KEY}

    def as_source(self) -> dict[str, Any]:
        """The shape of one entry of ``result.sources`` in the HTTP API."""
        return {
            "document_id": self.document_id,
            "source": self.source,
            "chunk_id": self.chunk_id,
            "score": self.score,
            "text": self.text,
            "metadata": self.user_metadata,
            "location": self.location.as_dict(),
        }


def format_location(source: str, location: Location) -> str:
    """``handbook.pdf p. 12 · Leave policy › Annual leave`` for people (CLI, prompts)."""
    parts = [source]
    if location.page is not None:
        parts[0] = f"{source} p. {location.page}"
    if location.section:
        parts.append(" › ".join(location.section))
    if location.table is not None:
        where = f"table {location.table}"
        if location.row is not None:
            where += f", row {location.row}"
        parts.append(where)
    return " · ".join(parts)
