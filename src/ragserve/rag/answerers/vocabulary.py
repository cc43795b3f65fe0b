"""Does the collection know the question's words? A signal for "not in the documents".

Off-topic questions asked of a collection often reuse its words ("出国出差的住宿标准是多少？"
of a handbook that has 出差 and 住宿标准 but never 出国), so overlap with the retrieved passages
misleads. What gives them away is a content word that occurs nowhere in the collection (or
almost nowhere), which the passages' own vocabulary cannot show. Here a question's content
words are looked up in the collection's lexical index (document frequencies, one GIN probe per
word) and weighed by IDF; :func:`unknown_share` is the share of the question's weight carried
by words found in no chunk.

Content words: the question's full-text words (Chinese cut by jieba, as the index has them)
minus English stop words, Chinese question words (什么, 多少, 几点, ...), single Chinese
characters, numbers, and Chinese "words" jieba's dictionary does not have (its statistical
model glues characters across word boundaries: "假应" of "休年假应提前"). Longer English words
are looked up by a prefix ("announ" meets "announced"), since the index does not stem. An English
word the collection does not hold but spells within one or two edits of one it does
("platycenida" for "platyctenida") counts as that word: a typo is not a foreign word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ragserve.kb.lexical import WordFrequencies, is_dictionary_word, lexical_text
from ragserve.kb.store import KnowledgeStore
from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers.extractive import STOPWORDS
from ragserve.text import CJK_IDEOGRAPH

# Words that ask rather than say what the question is about (jieba's cut of them included).
_ZH_QUESTION_WORDS_TEXT = """
    什么 多少 哪里 哪儿 哪个 哪些 哪位 哪天 哪一年 一年 怎么 怎样 怎么样 如何 是否 能否 可否
    为什么 什么样 几天 几点 几次 几位 几个 几楼 几人 几年 几月 几日 几号 多久 多长 多长时间
    长时间 时间 时候 什么时候 多高 多大 多远 多少度 有没有 没有 可以 需要 应该 能够 请问 哪些项目
    一次 一层 每年 每天 一天 最多 最少 最晚 一共"""
_ZH_QUESTION_WORDS = frozenset(_ZH_QUESTION_WORDS_TEXT.split())
_TOKEN = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class ContentWord:
    """A content word of the question and how it is looked up."""

    word: str
    """The lexeme (lowercase; a Chinese word as jieba cuts it)."""
    prefix: str | None = None
    """For longer English words: looked up as a prefix of the index's lexemes instead."""


def content_words(question: str) -> list[ContentWord]:
    """The question's content words, each once, in order."""
    out: dict[str, ContentWord] = {}
    for token in _TOKEN.findall(lexical_text(question)):
        word = token.lower()
        if word in out or word in STOPWORDS or word in _ZH_QUESTION_WORDS or word.isdigit():
            continue
        if CJK_IDEOGRAPH.match(word):
            if len(word) < 2 or not is_dictionary_word(word):
                continue
            out[word] = ContentWord(word)
        else:
            out[word] = ContentWord(word, _prefix(word))
    return list(out.values())


def _prefix(word: str) -> str | None:
    """What an English word is looked up by: all but its last three letters, at least four
    ("casualt" for casualties and casualty, "announ" for announced): inflections, and a typo at
    the end, still meet the collection's word. Short words and codes are looked up whole."""
    if len(word) < 5 or not word.isalpha() or not word.isascii():
        return None
    return word[: max(4, len(word) - 3)]


TYPO_START = 3
"""A misspelt word is compared with the collection's words that begin with the same letters."""


def may_be_misspelt(word: ContentWord) -> bool:
    """English words long enough for one edit not to make another word ("cat"/"car")."""
    return word.prefix is not None


def max_edits(word: str) -> int:
    """Edits that still leave ``word`` a misspelling: 1, or 2 from 10 letters on."""
    return 1 if len(word) < 10 else 2


def edit_distance(a: str, b: str, limit: int) -> int:
    """Insertions, deletions, substitutions and swaps of neighbours turning ``a`` into ``b``
    (optimal string alignment); any value above ``limit`` is returned as ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], previous2[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        previous2, previous = previous, row
    return min(previous[-1], limit + 1)


def misspelt_frequency(word: str, candidates: Mapping[str, int]) -> int:
    """The chunk count of the collection's word ``word`` misspells (the most frequent of the
    closest ones), or 0 when none is close enough."""
    limit = max_edits(word)
    best = (limit + 1, 0)
    for lexeme, chunks in candidates.items():
        distance = edit_distance(word, lexeme, limit)
        if (distance, -chunks) < (best[0], -best[1]):
            best = (distance, chunks)
    return best[1] if best[0] <= limit else 0


def with_misspellings(
    words: Sequence[ContentWord],
    frequencies: WordFrequencies,
    candidates: Mapping[str, Mapping[str, int]],
) -> WordFrequencies:
    """``frequencies`` where each word found nowhere takes the count of the collection's word
    it misspells (``candidates``: the collection's words beginning like it)."""
    prefixes = dict(frequencies.prefixes)
    for word in words:
        if word.prefix is not None and not prefixes.get(word.prefix):
            prefixes[word.prefix] = misspelt_frequency(word.word, candidates.get(word.word, {}))
    return replace(frequencies, prefixes=prefixes)


def frequency(word: ContentWord, frequencies: WordFrequencies) -> int:
    if word.prefix is not None:
        return frequencies.prefixes.get(word.prefix, 0)
    return frequencies.words.get(word.word, 0)


def unknown_share(words: Sequence[ContentWord], frequencies: WordFrequencies) -> float:
    """The IDF-weighted share of the question's content words that no chunk holds (0..1)."""
    weights = {w: frequencies.idf(frequency(w, frequencies)) for w in words}
    total = sum(weights.values())
    if not total:
        return 0.0
    return sum(v for w, v in weights.items() if frequency(w, frequencies) == 0) / total


class CollectionVocabulary:
    """The answerer's view of the collection's words, read through the store."""

    def __init__(self, store: KnowledgeStore, *, typos: bool = True) -> None:
        self.store = store
        self.typos = typos
        """Count a misspelt word as the collection's word it misspells (one more query, only
        when the question has an unknown English word)."""

    async def unknown_share(self, question: str, chunks: Sequence[RetrievedChunk]) -> float | None:
        """:func:`unknown_share` of the question in the collection of ``chunks`` (one query);
        None without chunks or when they are gone."""
        if not chunks:
            return None
        words = content_words(question)
        chunk = chunks[0].chunk_id
        frequencies = await self.store.word_frequencies(
            chunk,
            [w.word for w in words if w.prefix is None],
            prefixes=[w.prefix for w in words if w.prefix is not None],
        )
        if frequencies is None:
            return None
        unknown = [w.word for w in words if may_be_misspelt(w) and not frequency(w, frequencies)]
        if self.typos and unknown:
            similar = await self.store.words_sharing_a_beginning(chunk, unknown, start=TYPO_START)
            if similar:
                frequencies = with_misspellings(words, frequencies, similar)
        return unknown_share(words, frequencies)


class TextVocabulary:
    """The same counts computed in Python from a collection's texts, for benchmarks without a
    database (the index's parser approximated by runs of letters and digits)."""

    def __init__(self, texts: Iterable[str], *, typos: bool = True) -> None:
        self.vocabularies = [
            frozenset(t.lower() for t in _TOKEN.findall(lexical_text(text))) for text in texts
        ]
        self.all_words = frozenset().union(*self.vocabularies)
        self.typos = typos

    def frequencies(self, words: Sequence[ContentWord]) -> WordFrequencies:
        exact = {
            w.word: sum(w.word in v for v in self.vocabularies) for w in words if w.prefix is None
        }
        prefixes = {w.prefix: self._prefix_df(w.prefix) for w in words if w.prefix is not None}
        return WordFrequencies(
            chunks=max(1, len(self.vocabularies)), words=exact, prefixes=prefixes
        )

    def _prefix_df(self, prefix: str) -> int:
        found = [t for t in self.all_words if t.startswith(prefix)]
        return sum(any(t in v for t in found) for v in self.vocabularies) if found else 0

    def unknown_share(self, question: str) -> float:
        words = content_words(question)
        frequencies = self.frequencies(words)
        if self.typos:
            similar = {w.word: self._beginning_like(w.word) for w in words if may_be_misspelt(w)}
            frequencies = with_misspellings(words, frequencies, similar)
        return unknown_share(words, frequencies)

    def _beginning_like(self, word: str) -> dict[str, int]:
        """As :meth:`KnowledgeStore.words_sharing_a_beginning` (length spread 2)."""
        start = word[:TYPO_START]
        return {
            t: sum(t in v for v in self.vocabularies)
            for t in self.all_words
            if t.startswith(start) and abs(len(t) - len(word)) <= 2
        }
