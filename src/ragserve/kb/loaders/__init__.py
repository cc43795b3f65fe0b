"""Turn uploaded bytes (PDF, Word, text, Markdown, HTML) into plain text.

Every loader returns a :class:`~ragserve.kb.types.LoadedDocument`, and every failure, whatever the
library underneath raised, becomes a :class:`~ragserve.errors.DocumentError` whose message says in
plain words what is wrong with the file. The ingest pipeline records that message per file, so a
user uploading 50 files learns which three were broken and why, instead of a stack trace.

Parsing is CPU work: callers on the event loop run these functions in a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragserve.errors import DocumentError
from ragserve.kb.loaders.docx import load_docx
from ragserve.kb.loaders.html import load_html
from ragserve.kb.loaders.limits import DocumentLimits, check_chars, check_raw
from ragserve.kb.loaders.markdown import MARKDOWN_EXTENSIONS, load_markdown
from ragserve.kb.loaders.pdf import load_pdf
from ragserve.kb.loaders.structure import Extracted
from ragserve.kb.loaders.text import decode_text, load_text, normalize_text
from ragserve.kb.types import LoadedDocument

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "DocumentLimits",
    "decode_text",
    "load_document",
    "load_path",
    "normalize_text",
]

# A loader returns the text and its metadata, and, when it sees pages or headings, the text
# cut by location (see ragserve.kb.loaders.structure.Extracted).
_Loader = Callable[[bytes], tuple[str, dict[str, Any]] | Extracted]


_LOADERS: dict[str, _Loader] = {
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".txt": load_text,
    ".text": load_text,
    **dict.fromkeys(MARKDOWN_EXTENSIONS, load_markdown),
    ".html": load_html,
    ".htm": load_html,
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_LOADERS)

_HINTS = {
    ".doc": " (old Word format; save it as .docx)",
    ".rtf": " (save it as .docx or .txt)",
}


def load_document(
    data: bytes,
    filename: str,
    metadata: dict[str, Any] | None = None,
    limits: DocumentLimits | None = None,
) -> LoadedDocument:
    """Extract the text of one file, chosen by its extension.

    Loader metadata (``format``, ``pages``, ...) is merged under the caller's ``metadata``, so
    a user can override anything. PDF, Markdown, HTML and DOCX documents come with ``blocks``:
    their text cut where the page or the heading path changes, and around tables.
    Raises :class:`DocumentError` for unsupported, corrupt, encrypted or empty files, and for
    files over ``limits`` (see :mod:`ragserve.kb.loaders.limits`).
    """
    limits = limits or DocumentLimits()
    extension = Path(filename).suffix.lower()
    loader = _LOADERS.get(extension)
    if loader is None:
        shown = f"'{extension}'" if extension else "(no extension)"
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise DocumentError(
            f"unsupported file type {shown}{_HINTS.get(extension, '')}; supported: {supported}"
        )
    if not data or not data.strip():
        raise DocumentError("empty document: the file is empty")
    try:
        check_raw(data, extension, limits)
        # Only a PDF's page count is known before its text is extracted.
        extracted = (
            load_pdf(data, max_pages=limits.max_pages) if loader is load_pdf else loader(data)
        )
    except DocumentError:
        raise
    except Exception as exc:  # a bug or library surprise still reads as a per-file failure
        raise DocumentError(
            f"cannot read {extension[1:]} file: {type(exc).__name__}: {exc}"
        ) from exc
    text, found = extracted[0], extracted[1]
    check_chars(text, limits)
    blocks = extracted.blocks if isinstance(extracted, Extracted) else ()
    if not text.strip():
        hint = " (a scanned PDF? text inside images is not read)" if extension == ".pdf" else ""
        raise DocumentError(f"empty document: no text extracted{hint}")
    return LoadedDocument(
        source=filename, text=text, metadata={**found, **(metadata or {})}, blocks=blocks
    )


def load_path(
    path: Path, metadata: dict[str, Any] | None = None, limits: DocumentLimits | None = None
) -> LoadedDocument:
    """Load a file from disk; ``source`` is the path as given (how the user named it)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read file: {exc.strerror or exc}") from exc
    return load_document(data, str(path), metadata, limits)
