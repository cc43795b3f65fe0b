"""Markdown: kept as written (headings help chunking), minus YAML front matter.

The blocks follow the headings (ATX ``#`` and setext underlines, not inside code fences), and
pipe tables become table blocks. Heading lines are left out of the blocks: they are the
blocks' section path instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ragserve.kb.loaders.structure import Extracted, Heading, Item, Paragraph, Table, build_blocks
from ragserve.kb.loaders.text import decode_text, normalize_text

MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown"})

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<body>.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_YAML_KEY = re.compile(r"^[A-Za-z_][\w -]*:", re.MULTILINE)
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_INLINE = re.compile(r"\*+|`+|\[([^\]]*)\]\([^)]*\)")


def load_markdown(data: bytes) -> Extracted:
    """Markdown is kept as written (headings help chunking); only YAML front matter goes."""
    text, encoding = decode_text(data)
    text = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(text.replace("\r\n", "\n"))
    if match and _YAML_KEY.search(match.group("body")):
        text = text.replace("\r\n", "\n")[match.end() :]
    text = normalize_text(text, keep_indent=True)
    blocks = build_blocks(markdown_items(text), keep_indent=True)
    return Extracted(text, {"format": "markdown", "encoding": encoding}, blocks)


def markdown_items(text: str) -> Iterator[Item]:
    """Headings, paragraphs (runs of lines) and pipe tables, in order."""
    lines = text.split("\n")
    fence: str | None = None
    paragraph: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fenced = _FENCE.match(line)
        if fence is not None:
            paragraph.append(line)
            if fenced and fenced.group(1)[0] == fence[0] and len(fenced.group(1)) >= len(fence):
                fence = None
            i += 1
            continue
        if fenced:
            fence = fenced.group(1)
            paragraph.append(line)
            i += 1
            continue
        atx = _ATX.match(line)
        if atx:
            yield Paragraph("\n".join(paragraph))
            paragraph = []
            yield Heading(len(atx.group(1)), _plain(atx.group(2) or ""))
            i += 1
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        starts_paragraph = not paragraph or not paragraph[-1].strip()
        if line.strip() and starts_paragraph and _SETEXT.match(following):
            yield Paragraph("\n".join(paragraph))
            paragraph = []
            yield Heading(1 if following.strip()[0] == "=" else 2, _plain(line))
            i += 2
            continue
        if "|" in line and _TABLE_RULE.match(following) and "-" in following:
            yield Paragraph("\n".join(paragraph))
            paragraph = []
            rows = [_table_row(line)]
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(_table_row(lines[i]))
                i += 1
            yield Table(tuple(rows))
            continue
        paragraph.append(line)
        i += 1
    yield Paragraph("\n".join(paragraph))


def _table_row(line: str) -> str:
    cells = line.strip().strip("|").split("|")
    return " | ".join(_plain(cell.strip()) for cell in cells)


def _plain(text: str) -> str:
    """Inline Markdown of a heading or cell as plain words: emphasis marks go, links keep text."""
    return _INLINE.sub(lambda m: m.group(1) or "", text).strip()
