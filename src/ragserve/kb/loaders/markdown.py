"""Markdown: kept as written (headings help chunking), minus YAML front matter."""

from __future__ import annotations

import re
from typing import Any

from ragserve.kb.loaders.text import decode_text, normalize_text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<body>.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_YAML_KEY = re.compile(r"^[A-Za-z_][\w -]*:", re.MULTILINE)


def load_markdown(data: bytes) -> tuple[str, dict[str, Any]]:
    """Markdown is kept as written (headings help chunking); only YAML front matter goes."""
    text, encoding = decode_text(data)
    text = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(text.replace("\r\n", "\n"))
    if match and _YAML_KEY.search(match.group("body")):
        text = text.replace("\r\n", "\n")[match.end() :]
    return normalize_text(text, keep_indent=True), {"format": "markdown", "encoding": encoding}
