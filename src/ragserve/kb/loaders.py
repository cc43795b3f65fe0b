"""Turn uploaded bytes (PDF, Word, text, Markdown, HTML) into plain text.

Every loader returns a :class:`~ragserve.kb.types.LoadedDocument`, and every failure, whatever the
library underneath raised, becomes a :class:`~ragserve.errors.DocumentError` whose message says in
plain words what is wrong with the file. The ingest pipeline records that message per file, so a
user uploading 50 files learns which three were broken and why, instead of a stack trace.

Parsing is CPU work: callers on the event loop run these functions in a thread.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ragserve.errors import DocumentError
from ragserve.kb.types import LoadedDocument

__all__ = ["SUPPORTED_EXTENSIONS", "load_document", "load_path", "normalize_text"]

# --------------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------------

# Horizontal whitespace, including no-break and ideographic spaces that PDFs and Word love.
_SPACES = re.compile(r"[ \t\f\v\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
# C0/C1 control characters other than tab and newline carry no text and confuse tokenizers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufeff]")
_MANY_NEWLINES = re.compile(r"\n{3,}")

# Characters of Chinese/Japanese text, including CJK and full-width punctuation.
_CJK_CHAR = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
_CJK_SPACED = re.compile(rf"(?<={_CJK_CHAR}) (?={_CJK_CHAR})")
_CJK_ADJACENT = re.compile(rf"{_CJK_CHAR}(?={_CJK_CHAR})")
_CJK_ONE = re.compile(_CJK_CHAR)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


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


# --------------------------------------------------------------------------------------------
# Encoding detection for plain text, Markdown and HTML
# --------------------------------------------------------------------------------------------

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
    han = _HAN.findall(text)
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


# --------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------


def _load_pdf(data: bytes) -> tuple[str, dict[str, Any]]:
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


# --------------------------------------------------------------------------------------------
# Word (.docx)
# --------------------------------------------------------------------------------------------


def _load_docx(data: bytes) -> tuple[str, dict[str, Any]]:
    """Paragraphs and tables in body order; one table row per line, cells joined by `` | ``."""
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(_docx_blocks(document))
        title = document.core_properties.title
    except Exception as exc:  # zipfile, lxml and python-docx all raise their own types
        raise DocumentError(f"corrupt DOCX: {type(exc).__name__}: {exc}") from exc
    metadata: dict[str, Any] = {"format": "docx"}
    if title and title.strip():
        metadata["title"] = title.strip()
    return "\n\n".join(blocks), metadata


def _docx_blocks(document: Any) -> Iterator[str]:
    """Yield the text of each top-level paragraph and table, in the order they appear."""
    from docx.table import Table

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            yield _docx_table(item)
        else:
            yield item.text


def _docx_table(table: Any) -> str:
    """A table as lines of ``cell | cell``; merged cells are reported once, not repeated."""
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: list[Any] = []
        for cell in row.cells:
            if any(cell._tc is tc for tc in seen):  # horizontally merged: same cell again
                continue
            seen.append(cell._tc)
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plain text and Markdown
# --------------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<body>.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_YAML_KEY = re.compile(r"^[A-Za-z_][\w -]*:", re.MULTILINE)


def _load_text(data: bytes) -> tuple[str, dict[str, Any]]:
    """Plain text in whatever encoding it was saved in."""
    text, encoding = decode_text(data)
    return normalize_text(text, keep_indent=True), {"format": "text", "encoding": encoding}


def _load_markdown(data: bytes) -> tuple[str, dict[str, Any]]:
    """Markdown is kept as written (headings help chunking); only YAML front matter goes."""
    text, encoding = decode_text(data)
    text = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(text.replace("\r\n", "\n"))
    if match and _YAML_KEY.search(match.group("body")):
        text = text.replace("\r\n", "\n")[match.end() :]
    return normalize_text(text, keep_indent=True), {"format": "markdown", "encoding": encoding}


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

# Never content: page chrome, code, and interactive widgets.
_HTML_NOISE = (
    "nav, aside, script, style, noscript, form, template, svg, iframe, button, select, "
    "[hidden], [aria-hidden=true]"
)
# Paragraph-level blocks get a blank line around them, line-level ones a newline.
_HTML_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "pre", "ul", "ol", "dl"}
    | {"figure", "section", "article", "main", "address", "details", "hr", "header", "footer"}
)
_HTML_LINE = frozenset(
    {"div", "li", "tr", "dt", "dd", "br", "figcaption", "caption", "summary", "legend"}
    | {"thead", "tbody", "tfoot", "body"}
)
_HTML_CELLS = frozenset({"td", "th"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _load_html(data: bytes) -> tuple[str, dict[str, Any]]:
    """The main text of a page, without navigation, header, footer, sidebars or scripts.

    If the page marks its content with ``<main>`` or ``<article>`` only that is kept. A
    ``<header>``/``<footer>`` inside ``<main>`` or ``<article>`` is the content's own title or
    byline and is kept; elsewhere they are site chrome and dropped.
    """
    from selectolax.lexbor import LexborHTMLParser

    html = _decode_html(data)
    try:
        tree = LexborHTMLParser(html)
        title_node = tree.css_first("title")
        title = title_node.text(strip=True) if title_node else ""
        root = tree.css_first("main") or _single(tree.css("article")) or tree.body or tree.root
        if root is None:
            raise DocumentError("empty document: no HTML body")
        _remove_html_noise(root)
        text = _render_html(root)
    except DocumentError:
        raise
    except Exception as exc:  # selectolax is robust, but a crash must not escape raw
        raise DocumentError(f"cannot parse HTML: {type(exc).__name__}: {exc}") from exc
    metadata: dict[str, Any] = {"format": "html"}
    if title:
        metadata["title"] = " ".join(title.split())
    return text, metadata


def _decode_html(data: bytes) -> str:
    """Honour a ``<meta charset>`` declaration, else detect like plain text."""
    match = _META_CHARSET.search(data[:4096])
    if match and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        name = match.group(1).decode("ascii").lower()
        if name in {"gb2312", "gbk"}:  # pages labelled GB2312 routinely use GBK characters
            name = "gb18030"
        try:
            return data.decode(name)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong or unknown label: fall back to detection
    return decode_text(data)[0]


def _single(nodes: list[Any]) -> Any | None:
    """The one node of a list, or None when there are zero or several (e.g. a blog index)."""
    return nodes[0] if len(nodes) == 1 else None


def _remove_html_noise(root: Any) -> None:
    """Delete chrome elements from ``root``, outermost first so none is removed twice."""
    doomed = list(root.css(_HTML_NOISE))
    for node in root.css("header, footer"):
        if not _has_ancestor(node, "article", "main"):
            doomed.append(node)
    ids = {node.mem_id for node in doomed}
    for node in doomed:
        if not _has_ancestor_in(node, ids):
            node.decompose()


def _has_ancestor(node: Any, *tags: str) -> bool:
    """Whether ``node`` sits inside one of ``tags`` (context decides how its text is treated)."""
    parent = node.parent
    while parent is not None:
        if parent.tag in tags:
            return True
        parent = parent.parent
    return False


def _has_ancestor_in(node: Any, ids: set[int]) -> bool:
    """Whether an ancestor of ``node`` is one of the nodes ``ids`` (by selectolax mem_id)."""
    parent = node.parent
    while parent is not None:
        if parent.mem_id in ids:
            return True
        parent = parent.parent
    return False


# Placeholders for block boundaries while rendering; resolved by _resolve_breaks.
_PARAGRAPH_BREAK = "\x1e"
_LINE_BREAK = "\x1f"
_BREAK_RUN = re.compile(r"\s*[\x1e\x1f][\s\x1e\x1f]*")


def _render_html(root: Any) -> str:
    """Text of ``root`` with block structure kept as newlines and table cells as `` | ``.

    Iterative rather than recursive: deeply nested (machine-generated) HTML must not hit
    Python's recursion limit.
    """
    out: list[str] = []
    # Stack items: a node to visit, or a literal string to emit when popped.
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        tag = item.tag or ""
        if tag == "-text":
            out.append(_html_text(item))
            continue
        if tag.startswith(("-", "_", "!")):  # comments, doctype
            continue
        brk = (
            _PARAGRAPH_BREAK if tag in _HTML_PARAGRAPH else _LINE_BREAK if tag in _HTML_LINE else ""
        )
        out.append(brk)
        stack.append(brk)
        children = list(item.iter(include_text=True))
        if tag == "tr":
            children = _interleave_cells(children)
        stack.extend(reversed(children))
    return normalize_text(_resolve_breaks("".join(out)))


def _resolve_breaks(text: str) -> str:
    """Turn each run of block boundaries into one newline, or a blank line if any of them
    is a paragraph boundary (so ``</li><li>`` is one line break, ``</p><p>`` a blank line)."""
    return _BREAK_RUN.sub(lambda match: "\n\n" if _PARAGRAPH_BREAK in match.group() else "\n", text)


def _html_text(node: Any) -> str:
    """A text node's text; whitespace collapses except inside ``<pre>``."""
    text = (node.text_content or "").replace(_PARAGRAPH_BREAK, "").replace(_LINE_BREAK, "")
    if _has_ancestor(node, "pre"):
        return text
    return re.sub(r"\s+", " ", text)


def _interleave_cells(children: list[Any]) -> list[Any]:
    """Put a `` | `` separator between the cells of a table row."""
    result: list[Any] = []
    for child in children:
        if child.tag not in _HTML_CELLS:
            continue  # whitespace between cells
        if result:
            result.append(" | ")
        result.append(child)
    return result


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

_Loader = Callable[[bytes], tuple[str, dict[str, Any]]]

_LOADERS: dict[str, _Loader] = {
    ".pdf": _load_pdf,
    ".docx": _load_docx,
    ".txt": _load_text,
    ".text": _load_text,
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".html": _load_html,
    ".htm": _load_html,
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_LOADERS)

_HINTS = {
    ".doc": " (old Word format; save it as .docx)",
    ".rtf": " (save it as .docx or .txt)",
}


def load_document(
    data: bytes, filename: str, metadata: dict[str, Any] | None = None
) -> LoadedDocument:
    """Extract the text of one file, chosen by its extension.

    Loader metadata (``format``, ``pages``, ...) is merged under the caller's ``metadata``, so
    a user can override anything. Raises :class:`DocumentError` for unsupported, corrupt,
    encrypted or empty files.
    """
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
        text, found = loader(data)
    except DocumentError:
        raise
    except Exception as exc:  # a bug or library surprise still reads as a per-file failure
        raise DocumentError(
            f"cannot read {extension[1:]} file: {type(exc).__name__}: {exc}"
        ) from exc
    if not text.strip():
        hint = " (a scanned PDF? text inside images is not read)" if extension == ".pdf" else ""
        raise DocumentError(f"empty document: no text extracted{hint}")
    return LoadedDocument(source=filename, text=text, metadata={**found, **(metadata or {})})


def load_path(path: Path, metadata: dict[str, Any] | None = None) -> LoadedDocument:
    """Load a file from disk; ``source`` is the path as given (how the user named it)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read file: {exc.strerror or exc}") from exc
    return load_document(data, str(path), metadata)
