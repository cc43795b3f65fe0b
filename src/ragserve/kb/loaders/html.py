"""HTML: the main text of a page, without the site's or the documentation tool's chrome."""

from __future__ import annotations

import codecs
import re
from typing import Any

from ragserve.errors import DocumentError
from ragserve.kb.loaders.chrome import content_root, has_ancestor, remove_chrome
from ragserve.kb.loaders.limits import check_html_depth
from ragserve.kb.loaders.structure import Extracted, Heading, Item, Paragraph, Table, build_blocks
from ragserve.kb.loaders.text import decode_text, normalize_text

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


def load_html(data: bytes) -> Extracted:
    """The main text of a page, without navigation, header, footer, sidebars or scripts.

    If the page marks its content (``<main>``, ``role=main``, one ``<article>``) only that is
    kept; what counts as chrome is decided in :mod:`ragserve.kb.loaders.chrome`.
    """
    from selectolax.lexbor import LexborHTMLParser

    html = decode_html(data)
    try:
        tree = LexborHTMLParser(html)
        title_node = tree.css_first("title")
        title = title_node.text(strip=True) if title_node else ""
        root = content_root(tree)
        if root is None:
            raise DocumentError("empty document: no HTML body")
        check_html_depth(tree.root or root)
        remove_chrome(root)
        marked = render_marked(root)
    except DocumentError:
        raise
    except Exception as exc:  # selectolax is robust, but a crash must not escape raw
        raise DocumentError(f"cannot parse HTML: {type(exc).__name__}: {exc}") from exc
    metadata: dict[str, Any] = {"format": "html"}
    if title:
        metadata["title"] = " ".join(title.split())
    return Extracted(_unmarked(marked), metadata, build_blocks(_marked_items(marked)))


def decode_html(data: bytes) -> str:
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


# Placeholders for block boundaries while rendering; resolved by _resolve_breaks.
_PARAGRAPH_BREAK = "\x1e"
_LINE_BREAK = "\x1f"
_BREAK_RUN = re.compile(r"\s*[\x1e\x1f][\s\x1e\x1f]*")
# Private-use characters marking where headings and tables start and end in the rendered text:
# U+E001..U+E006 open a heading of level 1..6; _marked_items reads them, _unmarked drops them.
_HEADING_LEVEL_BASE = 0xE000
_HEADING_END = "\ue007"
_TABLE_START = "\ue008"
_TABLE_END = "\ue009"
_MARKERS = re.compile("[\ue001-\ue009]")
_MARKED = re.compile("([\ue001-\ue006])(.*?)\ue007|\ue008(.*?)\ue009", re.DOTALL)
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


def render_html(root: Any) -> str:
    """Text of ``root`` with block structure kept as newlines and table cells as `` | ``."""
    return _unmarked(render_marked(root))


def _unmarked(marked: str) -> str:
    return normalize_text(_MARKERS.sub("", marked))


def _marked_items(marked: str) -> list[Item]:
    """The headings, tables and the text between them, from :func:`render_marked`'s output."""
    items: list[Item] = []
    start = 0
    for match in _MARKED.finditer(marked):
        items.append(Paragraph(_MARKERS.sub("", marked[start : match.start()])))
        if match.group(1):
            level = ord(match.group(1)) - _HEADING_LEVEL_BASE
            items.append(Heading(level, _MARKERS.sub("", match.group(2))))
        else:
            rows = _MARKERS.sub("", match.group(3)).split("\n")
            items.append(Table(tuple(row.strip() for row in rows if row.strip())))
        start = match.end()
    items.append(Paragraph(_MARKERS.sub("", marked[start:])))
    return items


def render_marked(root: Any) -> str:
    """Like :func:`render_html`, with headings and tables marked, not yet normalised.

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
        if tag in _HEADINGS:
            out.append(chr(_HEADING_LEVEL_BASE + int(tag[1])))
            stack.append(_HEADING_END)
        elif tag == "table":
            out.append(_TABLE_START)
            stack.append(_TABLE_END)
        children = list(item.iter(include_text=True))
        if tag == "tr":
            children = _interleave_cells(children)
        stack.extend(reversed(children))
    return _resolve_breaks("".join(out))


def _resolve_breaks(text: str) -> str:
    """Turn each run of block boundaries into one newline, or a blank line if any of them
    is a paragraph boundary (so ``</li><li>`` is one line break, ``</p><p>`` a blank line)."""
    return _BREAK_RUN.sub(lambda match: "\n\n" if _PARAGRAPH_BREAK in match.group() else "\n", text)


def _html_text(node: Any) -> str:
    """A text node's text; whitespace collapses except inside ``<pre>``."""
    text = _MARKERS.sub("", node.text_content or "")
    text = text.replace(_PARAGRAPH_BREAK, "").replace(_LINE_BREAK, "")
    if has_ancestor(node, "pre"):
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
