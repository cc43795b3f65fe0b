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
are looked up by a prefix ("announ" meets "announced"), since the index does not stem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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

    def __init__(self, store: KnowledgeStore) -> None:
        self.store = store

    async def unknown_share(self, question: str, chunks: Sequence[RetrievedChunk]) -> float | None:
        """:func:`unknown_share` of the question in the collection of ``chunks`` (one query);
        None without chunks or when they are gone."""
        if not chunks:
            return None
        words = content_words(question)
        frequencies = await self.store.word_frequencies(
            chunks[0].chunk_id,
            [w.word for w in words if w.prefix is None],
            prefixes=[w.prefix for w in words if w.prefix is not None],
        )
        return None if frequencies is None else unknown_share(words, frequencies)


class TextVocabulary:
    """The same counts computed in Python from a collection's texts, for benchmarks without a
    database (the index's parser approximated by runs of letters and digits)."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.vocabularies = [
            frozenset(t.lower() for t in _TOKEN.findall(lexical_text(text))) for text in texts
        ]
        self.all_words = frozenset().union(*self.vocabularies)

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
        return unknown_share(words, self.frequencies(words))
