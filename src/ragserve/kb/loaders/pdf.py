"""PDF: the text of every page, without running headers/footers, wrapped lines joined again."""

from __future__ import annotations

import io
from typing import Any

from ragserve.errors import DocumentError
from ragserve.kb.loaders.pdf_text import join_spaced_cjk, remove_running_lines, unwrap_lines
from ragserve.kb.loaders.structure import Extracted
from ragserve.kb.loaders.text import normalize_text
from ragserve.kb.types import Location, TextBlock


def load_pdf(data: bytes) -> Extracted:
    """All pages' text, pages separated by a blank line; one block per page, with its number.

    pypdf is lenient (``strict=False``): it repairs small damage such as a wrong xref table,
    and we only fail when nothing usable comes out.
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    if b"%PDF-" not in data[:1024]:
        raise DocumentError("corrupt PDF: no PDF header (%PDF-) found; is this really a PDF?")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt_pdf(reader)
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (FileNotDecryptedError, DependencyError) as exc:
        raise DocumentError(f"encrypted PDF: cannot decrypt ({exc})") from exc
    except Exception as exc:  # pypdf raises plain KeyError/ValueError/... on damaged files
        reason = str(exc) if isinstance(exc, PdfReadError) else f"{type(exc).__name__}: {exc}"
        if b"%%EOF" not in data[-2048:]:
            reason += " (the file looks truncated: no %%EOF marker at its end)"
        raise DocumentError(f"corrupt PDF: {reason}") from exc
    cleaned = remove_running_lines([normalize_text(page) for page in pages])
    texts = [unwrap_lines(join_spaced_cjk(page)) if page else "" for page in cleaned]
    blocks = tuple(
        TextBlock(page, Location(page=number))
        for number, page in enumerate(texts, start=1)
        if page.strip()
    )
    text = "\n\n".join(block.text for block in blocks)
    metadata: dict[str, Any] = {"format": "pdf", "pages": len(pages)}
    title = _pdf_title(reader)
    if title:
        metadata["title"] = title
    return Extracted(text, metadata, blocks)


def _decrypt_pdf(reader: Any) -> None:
    """Open PDFs that are encrypted only against editing (empty user password).

    Such files open in any viewer without a password, so users expect them to work; files that
    need a password to open cannot be read and say so.
    """
    from pypdf import PasswordType

    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise DocumentError("encrypted PDF: a password is required to open it")


def _pdf_title(reader: Any) -> str | None:
    """The document title from the PDF info dictionary, if it has a usable one."""
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a broken info dictionary should not fail an otherwise readable file
        return None
    return title.strip() if isinstance(title, str) and title.strip() else None
