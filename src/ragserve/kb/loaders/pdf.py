"""PDF: the text of every page, with lines the layout wrapped joined again."""

from __future__ import annotations

import io
import re
import unicodedata
from typing import Any

from ragserve.errors import DocumentError
from ragserve.kb.loaders.text import normalize_text

# Characters of Chinese/Japanese text, including CJK and full-width punctuation.
_CJK_CHAR = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
_CJK_SPACED = re.compile(rf"(?<={_CJK_CHAR}) (?={_CJK_CHAR})")
_CJK_ADJACENT = re.compile(rf"{_CJK_CHAR}(?={_CJK_CHAR})")
_CJK_ONE = re.compile(_CJK_CHAR)


def _join_spaced_cjk(text: str) -> str:
    """Undo 'letter-spaced' Chinese (``流 明 机 器 人``) that some PDFs extract as.

    PDFs that position every glyph separately make pypdf insert a space between characters.
    Spaces between two Chinese characters are otherwise almost never meaningful, but to leave
    deliberately spaced text (tables, names) alone we only act when most CJK neighbours in the
    text are space-separated.
    """
    spaced = len(_CJK_SPACED.findall(text))
    if spaced < 5:
        return text
    adjacent = len(_CJK_ADJACENT.findall(text))
    if spaced <= adjacent:
        return text
    return _CJK_SPACED.sub("", text)


# A line ending like this ends a sentence or introduces a list: never rejoined.
_TERMINAL = frozenset("。！？；：.!?;:…")
# Lines starting like this begin a list item or a numbered clause (一、 / （二） / 第三条).
_BULLET = re.compile(
    r"^(?:[•·▪◦●■*–-]\s|\d{1,3}(?:[.)]\s|、)"
    r"|[（(][一二三四五六七八九十\d]{1,3}[）)]|[一二三四五六七八九十]{1,3}、"
    r"|第[一二三四五六七八九十百\d]+[章节条])"
)


def _char_width(char: str) -> int:
    """Display width in columns: full-width (CJK) characters take two."""
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _width(text: str) -> int:
    return sum(_char_width(char) for char in text)


def _is_cjk(char: str) -> bool:
    return bool(_CJK_ONE.match(char))


def _unwrap_lines(text: str) -> str:
    """Rejoin the lines of a paragraph that the PDF broke only because the line was full.

    pypdf returns one line per printed line and no blank lines between paragraphs, so a
    Chinese paragraph arrives cut in the middle of words (``口\\n头报备``), and the chunker,
    which prefers newlines to sentence ends, would cut there too. A line is treated as wrapped
    when the next word (for Chinese: the next character) would not have fitted after it in the
    text column (the 90th percentile of line widths), it does not end a sentence, and the next
    line does not start a list item or numbered clause. Chinese is joined without a space,
    other scripts with one.
    """
    lines = text.split("\n")
    widths = sorted(_width(line) for line in lines if line)
    if len(widths) < 3:
        return text
    column = widths[int(0.9 * (len(widths) - 1))]
    out = [lines[0]]
    last_printed = lines[0]  # the last printed line of out[-1], which decides if it was full
    for line in lines[1:]:
        if _wrapped(last_printed, line, column):
            out[-1] += _joiner(last_printed, line) + line
        else:
            out.append(line)
        last_printed = line
    return "\n".join(out)


def _wrapped(line: str, following: str, column: int) -> bool:
    """Whether ``line`` ended only because ``following``'s first word did not fit."""
    if not line or not following or line[-1] in _TERMINAL or _BULLET.match(following):
        return False
    first = following[0] if _is_cjk(following[0]) else following.split(" ", 1)[0]
    return _width(line) + 1 + _width(first) > 0.9 * column


def _joiner(line: str, following: str) -> str:
    """What goes between two rejoined lines: nothing for Chinese or a hyphen, else a space."""
    if _is_cjk(line[-1]) or _is_cjk(following[0]):
        return ""
    if line.endswith("-") and line[-2:-1].isalpha():
        return ""  # keep a hyphenated compound together: "carried-" + "over"
    return " "


def load_pdf(data: bytes) -> tuple[str, dict[str, Any]]:
    """All pages' text, pages separated by a blank line.

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
    text = "\n\n".join(_unwrap_lines(_join_spaced_cjk(normalize_text(page))) for page in pages)
    metadata: dict[str, Any] = {"format": "pdf", "pages": len(pages)}
    title = _pdf_title(reader)
    if title:
        metadata["title"] = title
    return text, metadata


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
