"""Per-document limits: a hostile or absurd file fails on its own, cheaply, before parsing.

Each check looks at what is known without decompressing or parsing the whole file (its byte
size, a ZIP's declared member sizes, a PDF's page count) so that memory stays bounded; the
character limit is checked again on the extracted text.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from ragserve.errors import DocumentError
from ragserve.kb.loaders.markdown import MARKDOWN_EXTENSIONS

# The text formats, read as one string: their byte size bounds the decoded text.
TEXT_EXTENSIONS = frozenset({".txt", ".text", ".html", ".htm", *MARKDOWN_EXTENSIONS})
# A UTF-8 character is at most 4 bytes, so more bytes than this can only exceed the limit.
_MAX_BYTES_PER_CHAR = 4
# More NUL bytes than this share of a file (and a few) make it binary, whatever its extension says.
_MAX_NUL_SHARE = 0.01
_MIN_NULS = 8
# WordprocessingML spends many bytes of markup per character of text; beyond this ratio the
# unpacked DOCX could only be over the character limit (or a zip bomb).
_DOCX_XML_BYTES_PER_CHAR = 20
# Browsers stop nesting HTML elements at 512 levels (Chromium's parser limit); deeper trees are
# machine-made and make the chrome heuristics, which look at each element's subtree, quadratic.
MAX_HTML_DEPTH = 512
# The parser itself is quadratic in nesting depth (lexbor: 2 s at 30,000 levels), so the raw
# markup is screened first by counting tags that must be closed explicitly; the count can only
# overestimate (stray end tags aside), hence a bound well above MAX_HTML_DEPTH.
MAX_HTML_OPEN_TAGS = 4096
_TAG = re.compile(rb"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*?(/?)>")
# Void elements and those whose end tag may be omitted never hold nesting open on their own.
_SELF_CLOSING = frozenset(
    b"area base br col embed hr img input link meta source track wbr p li dt dd tr td th "
    b"option optgroup thead tbody tfoot colgroup caption rp rt html head body".split()
)


@dataclass(frozen=True)
class DocumentLimits:
    """``RAGSERVE_MAX_DOCUMENT_CHARS`` and ``RAGSERVE_MAX_DOCUMENT_PAGES`` (same defaults)."""

    max_chars: int = 5_000_000
    max_pages: int = 2000

    @property
    def max_unpacked_bytes(self) -> int:
        return self.max_chars * _DOCX_XML_BYTES_PER_CHAR


def check_raw(data: bytes, extension: str, limits: DocumentLimits) -> None:
    """Checks on the bytes, before any parser sees them."""
    if extension in TEXT_EXTENSIONS:
        if len(data) > limits.max_chars * _MAX_BYTES_PER_CHAR:
            raise DocumentError(
                f"document too large: {len(data)} bytes of text is more than "
                f"RAGSERVE_MAX_DOCUMENT_CHARS ({limits.max_chars}) characters"
            )
        nuls = data.count(0)
        binary = nuls >= _MIN_NULS and nuls > len(data) * _MAX_NUL_SHARE
        if binary and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            # Text never holds many NULs (a stray one is stripped with the other control
            # characters); UTF-16/32, whose NULs are half the bytes, says so by its BOM.
            raise DocumentError(
                f"binary content, not text in any encoding: {nuls} NUL bytes in a "
                f"{extension[1:]} file"
            )
        if extension in (".html", ".htm"):
            check_html_open_tags(data)
    elif extension == ".docx":
        check_docx_unpacked_size(data, limits)


def check_html_open_tags(data: bytes) -> None:
    """Refuse markup that keeps more than :data:`MAX_HTML_OPEN_TAGS` elements open, unparsed."""
    open_tags = 0
    for match in _TAG.finditer(data):
        closing, name, self_closed = match.groups()
        if self_closed or name.lower() in _SELF_CLOSING:
            continue
        open_tags = max(0, open_tags - 1) if closing else open_tags + 1
        if open_tags > MAX_HTML_OPEN_TAGS:
            raise DocumentError(
                f"HTML nested too deeply: more than {MAX_HTML_OPEN_TAGS} elements open at once"
            )


def check_docx_unpacked_size(data: bytes, limits: DocumentLimits) -> None:
    """Refuse a DOCX whose members would unpack beyond the limit (a zip bomb), unread.

    Python's zipfile stops a member at its declared size, so the declared sizes are the bound.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DocumentError(f"corrupt DOCX: not a ZIP archive ({exc})") from exc
    if unpacked > limits.max_unpacked_bytes:
        raise DocumentError(
            f"document too large: the DOCX unpacks to {unpacked} bytes, more than "
            f"{limits.max_unpacked_bytes} (RAGSERVE_MAX_DOCUMENT_CHARS x "
            f"{_DOCX_XML_BYTES_PER_CHAR}); a zip bomb?"
        )


def check_chars(text: str, limits: DocumentLimits) -> None:
    if len(text) > limits.max_chars:
        raise DocumentError(
            f"document too large: {len(text)} characters; RAGSERVE_MAX_DOCUMENT_CHARS is "
            f"{limits.max_chars}"
        )


def check_html_depth(root: Any) -> None:
    """Refuse an HTML tree (a selectolax node) nested deeper than :data:`MAX_HTML_DEPTH`.

    Walks the tree iteratively, once: the check itself must not be what a deep tree breaks.
    """
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_HTML_DEPTH:
            raise DocumentError(
                f"HTML nested too deeply: more than {MAX_HTML_DEPTH} levels of elements"
            )
        child = node.child
        while child is not None:
            stack.append((child, depth + 1))
            child = child.next
