"""Split document text into overlapping chunks for embedding and retrieval.

A chunk should be a self-contained piece of meaning, so we cut at the largest natural boundary
that makes the chunk fit: paragraph, line, sentence, clause, word, and only as a last resort in
the middle of a word. Chinese has no spaces between words and ends sentences with full-width
punctuation (``。！？；``), so those come before the English ones in the list; otherwise a
Chinese paragraph longer than ``chunk_size`` would be cut at an arbitrary character.
"""

from __future__ import annotations

from langchain_text_splitters import RecursiveCharacterTextSplitter

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

    def __repr__(self) -> str:
        return f"Chunker(chunk_size={self.chunk_size}, chunk_overlap={self.chunk_overlap})"
