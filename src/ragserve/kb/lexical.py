"""The text given to PostgreSQL's full-text index, and to the lexical half of a query.

PostgreSQL's ``simple`` configuration lowercases words and keeps every one (no stemming, no
stop words: it serves every language alike). Its parser takes a run of Chinese characters
for one word, so Chinese is first cut into words here, separated by spaces; text without
Chinese passes unchanged. The same function prepares chunks and questions, so both sides
meet on the same words. The cut is chosen by measurement (docs/RETRIEVAL.md): ``jieba``
words (search mode: long words and their parts) or overlapping character bigrams.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ragserve.text import CJK_IDEOGRAPHS

Segmentation = Literal["jieba", "bigrams"]

SEGMENTATION: Segmentation = "jieba"
"""What the index uses (bench/retrieval_quality.py --segmentation measures both)."""

TS_CONFIG = "simple"
"""The text-search configuration of the index and the queries; one for all languages."""

_CJK_RUN = re.compile(f"[{CJK_IDEOGRAPHS}]+")


def bigrams(run: str) -> list[str]:
    """Overlapping pairs of characters; a lone character stays itself."""
    if len(run) < 2:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


class _Jieba:
    """One jieba tokenizer per process, loaded on first use (its dictionary takes ~1-3 s)."""

    _lock = threading.Lock()
    _cut: Callable[[str], Iterable[str]] | None = None
    _dictionary: Mapping[str, int] = {}

    @classmethod
    def _load(cls) -> Callable[[str], Iterable[str]]:
        with cls._lock:
            if cls._cut is None:
                import jieba  # heavy: only when Chinese text is met

                jieba.setLogLevel(logging.WARNING)  # not its dictionary-loading chatter
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                cls._dictionary = tokenizer.FREQ
                cls._cut = tokenizer.cut_for_search
            return cls._cut

    @classmethod
    def words(cls, run: str) -> list[str]:
        return [word for word in cls._load()(run) if word.strip()]

    @classmethod
    def in_dictionary(cls, word: str) -> bool:
        cls._load()
        return cls._dictionary.get(word, 0) > 0


def is_dictionary_word(word: str) -> bool:
    """Whether jieba's dictionary has ``word``: a real word, not a pair of characters its
    statistical model glued together across a word boundary ("假应" of "休年假应提前")."""
    return _Jieba.in_dictionary(word)


def segment(run: str, segmentation: Segmentation) -> list[str]:
    return _Jieba.words(run) if segmentation == "jieba" else bigrams(run)


def lexical_text(text: str, segmentation: Segmentation = SEGMENTATION) -> str:
    """``text`` with each run of Chinese characters replaced by its words, space-separated."""
    if _CJK_RUN.search(text) is None:
        return text
    return _CJK_RUN.sub(lambda m: f" {' '.join(segment(m.group(), segmentation))} ", text)


@dataclass(frozen=True)
class WordFrequencies:
    """How many chunks of a collection hold some words, or a word starting with some prefixes.

    Read from the lexical index (:meth:`KnowledgeStore.word_frequencies`); the offline answerer
    uses it to tell a question about the collection from one that merely reuses some of its
    words: a content word of the question found in no chunk at all is a strong sign of the
    latter.
    """

    chunks: int
    """The collection's chunk count (N)."""
    words: Mapping[str, int]
    """Lexeme -> number of chunks holding it (counted up to a cap: rarity is what matters)."""
    prefixes: Mapping[str, int] = field(default_factory=dict)
    """Prefix -> number of chunks holding a lexeme that starts with it."""

    def idf(self, df: int) -> float:
        """BM25's IDF, ln(1 + (N - df + 0.5) / (df + 0.5)), as the hybrid search weighs words."""
        df = min(max(df, 0), self.chunks)
        return math.log(1 + (self.chunks - df + 0.5) / (df + 0.5))
