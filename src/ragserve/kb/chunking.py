"""Split document text into overlapping chunks for embedding and retrieval.

A chunk should be a self-contained piece of meaning, so we cut at the largest natural boundary
that makes the chunk fit: paragraph, line, sentence, clause, word, and only as a last resort in
the middle of a word. Chinese has no spaces between words and ends sentences with full-width
punctuation (``。！？；``), so those come before the English ones in the list; otherwise a
Chinese paragraph longer than ``chunk_size`` would be cut at an arbitrary character.

Where a chunk comes from: a document's text arrives cut into blocks, each on one PDF page or
under one heading path (see :class:`~ragserve.kb.types.TextBlock`), and chunks are cut inside
a block, never across two. So every chunk has exactly one page and one section, and a
paragraph that runs over a page break becomes two chunks, one per page. Tables are cut
between rows, and every chunk of a table starts with the table's header row, so a row
found alone still says what its cells mean; its location names the table and its first row.
"""

from __future__ import annotations

from dataclasses import replace

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ragserve.kb.types import Chunk, LoadedDocument, TextBlock

__all__ = ["SEPARATORS", "Chunker"]

# Largest boundary first. Sentence and clause ends are kept on the piece they end
# (``keep_separator="end"``), so a chunk ends with "。" instead of the next one starting with it.
SEPARATORS: tuple[str, ...] = (
    "\n\n",
    "\n",
    "。",
    "！",
    "？",
    "；",
    ". ",
    "! ",
    "? ",
    "; ",
    "，",
    ", ",
    " ",
    "",
)


class Chunker:
    """Splits text into chunks of at most ``chunk_size`` characters.

    Consecutive chunks share up to ``chunk_overlap`` characters so that a fact straddling a
    boundary is still retrievable from one of them. Sizes are in characters, not tokens: one
    rule for both languages, and no tokenizer needed at ingest time.
    """

    def __init__(self, chunk_size: int = 800, chunk_overlap: int = 100) -> None:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if not 0 <= chunk_overlap < chunk_size:
            raise ValueError(
                f"chunk_overlap must be >= 0 and smaller than chunk_size ({chunk_size}), "
                f"got {chunk_overlap}"
            )
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self._splitter = RecursiveCharacterTextSplitter(
            separators=list(SEPARATORS),
            keep_separator="end",
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            length_function=len,
            is_separator_regex=False,
            strip_whitespace=True,
        )

    def split(self, text: str) -> list[str]:
        """The chunks of ``text`` in order, stripped, with empty ones dropped."""
        if not text or not text.strip():
            return []
        chunks = (chunk.strip() for chunk in self._splitter.split_text(text))
        return [chunk for chunk in chunks if chunk]

    def split_document(self, document: LoadedDocument) -> list[Chunk]:
        """The chunks of a document, each with the location of the block it was cut from."""
        if not document.blocks:
            return [Chunk(text) for text in self.split(document.text)]
        chunks: list[Chunk] = []
        for block in document.blocks:
            if block.rows:
                chunks.extend(self._split_table(block))
            else:
                chunks.extend(Chunk(text, block.location) for text in self.split(block.text))
        return chunks

    def _split_table(self, block: TextBlock) -> list[Chunk]:
        """Whole rows packed up to ``chunk_size``, each chunk under the header row."""
        header = f"{block.header}\n" if block.header else ""
        chunks: list[Chunk] = []
        rows: list[str] = []
        first = 1

        def flush(next_first: int) -> None:
            nonlocal first
            if rows:
                text = header + "\n".join(rows)
                chunks.append(Chunk(text, replace(block.location, row=first)))
                rows.clear()
            first = next_first

        for number, row in enumerate(block.rows, start=1):
            room = self.chunk_size - len(header)
            if len(row) > room:  # a row too long for one chunk is cut like prose
                flush(number)
                location = replace(block.location, row=number)
                chunks.extend(Chunk(header + piece, location) for piece in self.split(row))
                first = number + 1
                continue
            if rows and len(header) + len("\n".join([*rows, row])) > self.chunk_size:
                flush(number)
            rows.append(row)
        flush(len(block.rows) + 1)
        return chunks

    def __repr__(self) -> str:
        return f"Chunker(chunk_size={self.chunk_size}, chunk_overlap={self.chunk_overlap})"
