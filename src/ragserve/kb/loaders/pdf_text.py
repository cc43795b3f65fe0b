"""Cleaning the text pypdf extracts from a PDF: page furniture, letter-spaced CJK, wrapped lines.

pypdf gives one string per page, laid out line by line as printed. Three things in it are layout,
not text, and would otherwise end up in chunks: the running header and footer printed on every
page (title, chapter, ``Page 3 of 12``), the spaces some PDFs put between Chinese characters,
and the line breaks that only mark where the printed line was full.
"""

from __future__ import annotations

import re
import unicodedata

from ragserve.text import CJK_IDEOGRAPHS

# A page's first and last printed lines, where running headers and footers are looked for.
_EDGE_LINES = 3
# How many pages before and after a page are compared with it (2 covers book layouts whose
# even and odd pages carry different headers).
_NEIGHBOURS = 2
# Fewer pages than this give too little evidence that a line repeats by design.
_MIN_PAGES = 3
_DIGITS = re.compile(r"\d+")
# A line that is only a page number: "7", "- 7 -", "Page 7", "Page 7 of 12", "7/12", "vii".
_PAGE_NUMBER = re.compile(
    r"^(?:(?:page\s+)?\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|[-–—]\s*\d{1,4}\s*[-–—]|[ivxlcdm]{1,7})$",
    re.IGNORECASE,
)


def remove_running_lines(pages: list[str]) -> list[str]:
    """Drop the headers and footers printed on every page: running titles, page numbers.

    A line among the first or last three printed lines of a page is a running line when, numbers
    masked, it is also at the same place on a page at most two pages away: ``Chapter 4:
    Function reference 12`` on page 14 and ``… 13`` on page 15, or ``Page 3 of 12`` and
    ``Page 4 of 12``. Running titles that change with the chapter are caught that way too.
    A page's first or last line that is only a page number goes when the document numbers at
    least two of its pages like that. The same words inside a page's body stay. Documents of
    fewer than three pages are returned unchanged: too little evidence.
    """
    if len(pages) < _MIN_PAGES:
        return pages
    split = [page.split("\n") for page in pages]
    edges = [_edge_keys(lines) for lines in split]
    numbered = sum(1 for lines in split if _has_page_number(lines))
    cleaned = []
    for page_index, lines in enumerate(split):
        nearby: set[tuple[str, int, str]] = set()
        for other in range(page_index - _NEIGHBOURS, page_index + _NEIGHBOURS + 1):
            if other != page_index and 0 <= other < len(split):
                nearby.update(*edges[other].values())
        outermost = _outermost_indexes(lines)
        doomed = {
            index
            for index, keys in edges[page_index].items()
            if keys & nearby
            or (numbered >= 2 and index in outermost and _is_page_number(lines[index]))
        }
        kept = [line for index, line in enumerate(lines) if index not in doomed]
        cleaned.append("\n".join(kept).strip("\n"))
    return cleaned


def _edge_keys(lines: list[str]) -> dict[int, set[tuple[str, int, str]]]:
    """For each edge line's index: which edge, how far from it, and the line's masked text.

    Headers and footers sit at the same place on every page, so a line only matches lines at
    the same distance from the same edge; this keeps body lines that happen to fall near the
    edge of two pages (a repeated table row, a wrapped word) out.
    """
    printed = [index for index, line in enumerate(lines) if line.strip()]
    keys: dict[int, set[tuple[str, int, str]]] = {}
    for rank, index in enumerate(reversed(printed[-_EDGE_LINES:])):
        keys.setdefault(index, set()).add(("bottom", rank, _line_key(lines[index])))
    for rank, index in enumerate(printed[:_EDGE_LINES]):
        keys.setdefault(index, set()).add(("top", rank, _line_key(lines[index])))
    return keys


def _outermost_indexes(lines: list[str]) -> set[int]:
    printed = [index for index, line in enumerate(lines) if line.strip()]
    return {printed[0], printed[-1]} if printed else set()


def _has_page_number(lines: list[str]) -> bool:
    return any(_is_page_number(lines[index]) for index in _outermost_indexes(lines))


def _is_page_number(line: str) -> bool:
    return bool(_PAGE_NUMBER.match(line.strip()))


def _line_key(line: str) -> str:
    """A line with numbers masked and case and spacing folded."""
    return " ".join(_DIGITS.sub("#", line).lower().split())


# Characters of Chinese/Japanese text, including CJK and full-width punctuation.
_CJK_CHAR = rf"[\u3000-\u303f{CJK_IDEOGRAPHS}\uff00-\uffef]"
_CJK_SPACED = re.compile(rf"(?<={_CJK_CHAR}) (?={_CJK_CHAR})")
_CJK_ADJACENT = re.compile(rf"{_CJK_CHAR}(?={_CJK_CHAR})")
_CJK_ONE = re.compile(_CJK_CHAR)


def join_spaced_cjk(text: str) -> str:
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


def unwrap_lines(text: str) -> str:
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
