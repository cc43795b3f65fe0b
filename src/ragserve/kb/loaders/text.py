"""Plain text: encoding detection, and the whitespace normalisation every loader shares."""

from __future__ import annotations

import codecs
import re
from typing import Any

from ragserve.errors import DocumentError
from ragserve.text import CJK_IDEOGRAPH

# Horizontal whitespace, including no-break and ideographic spaces that PDFs and Word love.
_SPACES = re.compile(r"[ \t\f\v\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
# C0/C1 control characters other than tab and newline carry no text and confuse tokenizers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufeff]")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalize_text(text: str, *, keep_indent: bool = False) -> str:
    """Make extracted text uniform before chunking and hashing.

    Runs of spaces collapse to one, trailing spaces go, and more than one blank line becomes one,
    so the same content always hashes the same however it was laid out. Paragraph breaks (blank
    lines) survive because the chunker splits on them first. ``keep_indent`` keeps leading
    indentation (Markdown code blocks, indented plain text), where it carries meaning.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    text = text.replace("\u2029", "\n\n")
    text = _CONTROL.sub("", text)
    lines = []
    for line in text.split("\n"):
        if keep_indent:
            body = line.lstrip(" \t")
            indent = line[: len(line) - len(body)]
            line = indent + _SPACES.sub(" ", body).rstrip() if body else ""
        else:
            line = _SPACES.sub(" ", line).strip()
        lines.append(line)
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _looks_like_chinese(text: str) -> bool:
    """True when ``text`` holds Chinese that is plausibly what the author wrote.

    Any byte soup in Big5 or Shift-JIS also 'decodes' as GB18030, but into rare characters;
    everyday simplified Chinese is nearly all inside the 6,763 characters of GB2312. Requiring
    most Han characters to be GB2312 keeps us from accepting mojibake.
    """
    han = CJK_IDEOGRAPH.findall(text)
    if not han or _CONTROL.search(text.replace("\ufeff", "")):
        return False
    common = 0
    for char in han:
        try:
            char.encode("gb2312")
        except UnicodeEncodeError:
            continue
        common += 1
    return common >= 0.6 * len(han)


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of unknown encoding; returns ``(text, encoding)``.

    Order matters: a BOM is authoritative; valid UTF-8 is almost never an accident; GB18030 (a
    superset of GBK/GB2312) is the usual non-UTF-8 encoding of Chinese files on Windows and
    charset-normalizer alone sometimes mistakes short GBK text for another code page. Only
    then do we ask charset-normalizer.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise DocumentError(
                    f"cannot decode text: it starts with a {encoding} byte-order mark but is not "
                    f"valid {encoding} ({exc.reason} at byte {exc.start})"
                ) from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        text = None
    if text is not None and _looks_like_chinese(text):
        return text, "gb18030"
    return _decode_with_charset_normalizer(data, fallback=text)


def _decode_with_charset_normalizer(data: bytes, fallback: str | None) -> tuple[str, str]:
    """Last resort: statistical detection; binary files end here as a DocumentError."""
    from charset_normalizer import from_bytes

    try:
        best = from_bytes(data).best()
    except Exception as exc:  # the detector must never crash an ingest
        raise DocumentError(f"cannot detect the text encoding: {exc}") from exc
    if best is not None:
        return str(best), codecs.lookup(best.encoding).name
    if fallback is not None:
        return fallback, "gb18030"
    raise DocumentError("cannot detect the text encoding: the file does not look like text")


def load_text(data: bytes) -> tuple[str, dict[str, Any]]:
    """Plain text in whatever encoding it was saved in; it has no pages or headings."""
    text, encoding = decode_text(data)
    return normalize_text(text, keep_indent=True), {"format": "text", "encoding": encoding}
