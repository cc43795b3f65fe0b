"""PDF: the text of every page, without running headers/footers, wrapped lines joined again."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from ragserve.errors import DocumentError
from ragserve.kb.loaders.pdf_text import join_spaced_cjk, remove_running_lines, unwrap_lines
from ragserve.kb.loaders.structure import Extracted, Heading, Item, Page, Paragraph, build_blocks
from ragserve.kb.loaders.text import normalize_text

# A PDF has no heading markup, only bigger or bolder text, which pypdf's plain text loses. We
# take as headings only the lines that number themselves as such, the way policies and
# handbooks do, so that body lines are never mistaken for headings: "第二章 住宿标准" (章 1,
# 节 2, 条 3), "一、总则" (1), "4. Expenses" / "4.2 Meals" / "4.2.1 Receipts" (1, 2, 3).
# They must be short and not end like a sentence.
_NUMBERED_HEADING = re.compile(
    r"^(?:第[一二三四五六七八九十百零〇\d]+(?P<zh>[章节条])"
    r"|(?P<cn>[一二三四五六七八九十]+)、"
    r"|(?P<num>\d{1,2}(?:\.\d{1,2}){0,2})\.?\s+(?=\D))"
)
_SENTENCE_END = re.compile(r"[.!?:;,。！？；：，、|]$")
_ZH_LEVEL = {"章": 1, "节": 2, "条": 3}
_TITLE_LENGTH = 60


def load_pdf(data: bytes, *, max_pages: int | None = None) -> Extracted:
    """All pages' text, pages separated by a blank line; one block per page, with its number.

    pypdf is lenient (``strict=False``): it repairs small damage such as a wrong xref table,
    and we only fail when nothing usable comes out. More than ``max_pages`` pages fail before
    any page's text is extracted.
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    if b"%PDF-" not in data[:1024]:
        raise DocumentError("corrupt PDF: no PDF header (%PDF-) found; is this really a PDF?")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt_pdf(reader)
        if max_pages is not None and len(reader.pages) > max_pages:
            raise DocumentError(
                f"document too large: {len(reader.pages)} pages; "
                f"RAGSERVE_MAX_DOCUMENT_PAGES is {max_pages}"
            )
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
    text = "\n\n".join(page for page in texts if page)
    blocks = build_blocks(_pdf_items(texts))
    metadata: dict[str, Any] = {"format": "pdf", "pages": len(pages)}
    title = _pdf_title(reader)
    if title:
        metadata["title"] = title
    return Extracted(text, metadata, blocks)


def _pdf_items(pages: list[str]) -> Iterator[Item]:
    """Each page's lines as paragraphs between numbered headings, after a page marker.

    A heading line stays in the text that follows it (PDFs print it inline, and a line wrongly
    taken for a heading must not vanish from the chunks), but a heading with no text under it
    on its page makes no block of its own. Consecutive lines numbered at the same level are a
    numbered list, not headings. A short first line right before the first heading is the
    document's title (level 0), as Word's "Title" style is.
    """
    for number, page in enumerate(pages, start=1):
        yield Page(number)
        lines = page.split("\n")
        found = [_heading_level(line) for line in lines]
        levels = [
            None if level is not None and level in (_at(found, i - 1), _at(found, i + 1)) else level
            for i, level in enumerate(found)
        ]
        if number == 1 and _is_title(lines, levels):
            levels[0] = 0
        run: list[str] = []
        has_body = False
        for line, level in zip(lines, levels, strict=True):
            if level is not None:
                if has_body:
                    yield Paragraph("\n".join(run))
                yield Heading(level, line)
                run, has_body = [], False
            else:
                has_body = has_body or bool(line.strip())
            run.append(line)
        if has_body:
            yield Paragraph("\n".join(run))


def _is_title(lines: list[str], levels: list[int | None]) -> bool:
    """Whether the first line is a title: short, not a sentence, right before a heading."""
    if len(lines) < 2 or levels[0] is not None or levels[1] is None:
        return False
    return len(lines[0]) <= _TITLE_LENGTH and not _SENTENCE_END.search(lines[0])


def _at(levels: list[int | None], index: int) -> int | None:
    return levels[index] if 0 <= index < len(levels) else None


def _heading_level(line: str) -> int | None:
    """The level of a numbered heading line, None for any other line."""
    line = line.strip()
    if len(line) > 40 or _SENTENCE_END.search(line):
        return None
    match = _NUMBERED_HEADING.match(line)
    if match is None or len(line) == len(match.group()):
        return None
    if match.group("zh"):
        return _ZH_LEVEL[match.group("zh")]
    if match.group("cn"):
        return 1
    return match.group("num").count(".") + 1


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
