"""The offline answerer: quotes the best one or two sentences of the retrieved chunks.

It needs no model and no network, so ``ragserve demo`` and air-gapped installs answer out of
the box. It cannot rephrase or combine facts; it finds the sentence most likely to hold the
answer and cites the chunk it came from, like an LLM told to quote.

How a sentence is scored against the question:

* lexical overlap of content terms, IDF-weighted over the sentences of the retrieved set (so
  words every chunk shares count little). English terms are lowercased words minus stopwords,
  lightly stemmed; Chinese terms are character bigrams;
* a bonus for question-term pairs that appear next to each other in the sentence too;
* the relevance of its chunk as a whole and of the neighbouring sentence (answers often say
  "it" or "he" for an entity named one sentence earlier);
* a bonus for the chunk's retrieval rank;
* an answer-type bonus when the question asks for a number or date (how many, when, 多少, 几)
  or a name (who, where) and the sentence has one that the question does not already contain.

Headings (short lines without sentence punctuation, as PDFs print them) and table header rows
are never quoted; a table row is matched together with its header row.

When no sentence shares a meaningful part of the question's terms (``min_coverage``, 15% of
their weight), or the passages hold less than ``min_question_share`` of the question's terms,
or (given the collection's vocabulary, ``vocabulary.py``) most of the question's weight is in
words no chunk of the collection holds (``max_unknown_share``; a misspelt word counts as the
word it misspells), or (given the collection's embedding model, when that model has a
calibration: ``grounding.py``) the question is too far from every one of its best candidate
sentences, the documents do not hold the answer, and it says so in the question's language.

When a number, date or name is asked for and the best sentence, clearly ahead, holds exactly
one such value, the answer is that value on its own line, then the sentence as its citation.

``bench/extractive_eval.py`` measures it on SQuAD: the answer contains a gold answer for about
91% of questions when the right paragraph is among four retrieved ones, and it says "not
found" for 95% of questions asked against another article's paragraphs.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers.base import LLMUsage
from ragserve.rag.answerers.grounding import SentenceGrounding
from ragserve.rag.prompts import is_chinese, not_found_message
from ragserve.text import CJK_IDEOGRAPH as _CJK_RE
from ragserve.text import CJK_IDEOGRAPHS as _CJK


def _words(text: str) -> frozenset[str]:
    """A word list written as white-space separated text, as a set."""
    return frozenset(text.split())


# --------------------------------------------------------------------------- sentences

_ABBREVIATIONS = _words(
    """mr mrs ms dr prof sr jr st mt ft vs e.g i.e inc ltd co corp no nos vol fig figs approx
    jan feb aug sept oct nov dec gen gov sen rep rev capt col lt sgt ca c cf al dept est op
    u.s u.k u.n a.m p.m ph.d d.c"""
)
# A candidate English boundary: end mark(s), closing quotes/brackets, then white space.
_EN_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
# Chinese end marks end a sentence whatever follows (with their closing quotes).
_ZH_BOUNDARY = re.compile(r"[。！？；!?][”’」』）)]*")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•·#>]|\d+[.)、]|[（(]?\d+[)）])\s*")
_ENDS_CLAUSE = re.compile(r"[.!?:;。！？；：]$")
_TABLE_CELL = " | "  # how the loaders join a table row's cells
_BULLETS = ("-", "*", "•", "·")
# A line that is only a heading: short, no sentence punctuation at its end ("第二章 住宿标准",
# "4. Expenses", "# Security"). Kept in chunks (PDFs print headings inline) but never quoted.
_HEADING_LINE = re.compile(r"^(?:#+\s*)?[^.!?:;。！？；：|]{1,30}$")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, for English and Chinese alike.

    Blank lines always separate; a single newline does when the line is a heading or list
    item or already ends a clause, and otherwise is a soft wrap (PDF layout) that is joined.
    English boundaries need white space after the mark (so "3.5" stays whole) and are skipped
    after known abbreviations and initials ("Dr.", "U.S.", "J. K.") or before a lowercase word.
    """
    sentences: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        for line in _logical_lines(block):
            sentences.extend(_split_line(line))
    return sentences


def _logical_lines(block: str) -> list[str]:
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    merged: list[str] = []
    for line in lines:
        if merged and not _line_break_is_boundary(merged[-1], line):
            previous = merged[-1]
            glue = "" if _CJK_RE.match(line[0]) and _CJK_RE.match(previous[-1]) else " "
            merged[-1] = previous + glue + line
        else:
            merged.append(line)
    return merged


def _line_break_is_boundary(previous: str, line: str) -> bool:
    if _ENDS_CLAUSE.search(previous) or _LIST_MARKER.match(line) or previous.startswith("#"):
        return True
    if _TABLE_CELL in previous or _TABLE_CELL in line:  # table rows are lines of their own
        return True
    # A short line without end punctuation is a heading or a paragraph's last line.
    return len(previous) < 40


def _split_line(line: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _ZH_BOUNDARY.finditer(line):
        pieces.extend(_split_english(line[start : match.end()]))
        start = match.end()
    pieces.extend(_split_english(line[start:]))
    return [piece for piece in (p.strip() for p in pieces) if piece]


def _split_english(text: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _EN_BOUNDARY.finditer(text):
        if _is_english_boundary(text, match):
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return pieces


def _is_english_boundary(text: str, match: re.Match[str]) -> bool:
    following = text[match.end() :].lstrip()
    if not following or following[0].islower():
        return False
    if match.group().startswith("."):
        word = re.search(r"(\S+)$", text[: match.start()])
        token = word.group(1).lstrip("(\"'“‘").lower() if word else ""
        if token in _ABBREVIATIONS or re.fullmatch(r"[a-z]|(?:[a-z]\.)+[a-z]", token):
            return False
    return True


# --------------------------------------------------------------------------- terms

STOPWORDS = _words(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during each
    few for from further had has have having he her here hers herself him himself his how i
    if in into is it its itself just me more most my myself no nor not now of off on once
    only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom whose why will with would you
    your yours yourself yourselves one ones s t d ll m re ve many much kind type name called
    call known used use way us whether within without upon onto among amongst per via"""
)
_ZH_STOP_CHARS = frozenset("哪谁吗呢么啥的了是吧啊")
_ZH_STOP_BIGRAMS = _words(
    """什么 多少 几个 如何 怎样 怎么 为什 是否 是什 哪些 哪个 哪里 的是 是多 有多 有几 请问"""
)
_WORD = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:['’][^\W_{_CJK}]+)*")


def stem(word: str) -> str:
    """A deliberately light English stemmer: enough to match plurals and verb forms."""
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix, min_len in (("ing", 6), ("ed", 5), ("ion", 6), ("ly", 6)):
        if word.endswith(suffix) and len(word) >= min_len:
            word = word[: -len(suffix)]
            if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]  # stopped -> stop, running -> run
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]  # locate/locat(ed)/locat(ion) meet on "locat"
    return word


def terms(text: str) -> list[str]:
    """Content terms of a text, in order: stemmed English words, Chinese character bigrams."""
    out: list[str] = []
    for token in _WORD.findall(text):
        if _CJK_RE.match(token):
            if len(token) == 1:
                if token not in _ZH_STOP_CHARS:
                    out.append(token)
                continue
            for i in range(len(token) - 1):
                bigram = token[i : i + 2]
                if bigram in _ZH_STOP_BIGRAMS or _ZH_STOP_CHARS.intersection(bigram):
                    continue
                out.append(bigram)
            continue
        word = token.lower()
        if word in STOPWORDS:
            continue
        out.append(stem(word))
    return out


# --------------------------------------------------------------------------- answer types

_NUMBER_WORDS = _words(
    """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy
    eighty ninety hundred thousand million billion trillion dozen half percent"""
)
_MONTHS = _words(
    """january february march april may june july august september october november december
    spring summer autumn winter century decade bc ad"""
)
_NUMBER_QUESTION = re.compile(
    r"\b(?:how\s+(?:many|much|long|old|far|large|big|high|tall|often|fast|deep|wide)"
    r"|what\s+(?:percentage|percent|number|amount|year|age|size|proportion|population)"
    r"|which\s+year|in\s+what\s+year)\b|多少|几|何时|什么时候|哪一?年|哪天|日期|时间|比例",
    re.I,
)
_DATE_QUESTION = re.compile(
    r"\bwhen\b|\b(?:what|which)\s+(?:year|date|day|month|century|decade|time)\b", re.I
)
_NAME_QUESTION = re.compile(r"\b(?:who|whom|whose|where)\b|\bwhat\s+(?:city|country|state)\b", re.I)
_CJK_NUMERAL = re.compile("[零一二三四五六七八九十百千万亿两]+")


def _answer_type(question: str) -> str | None:
    if _NUMBER_QUESTION.search(question):
        return "number"
    if _DATE_QUESTION.search(question):
        return "date"
    if _NAME_QUESTION.search(question) or "谁" in question or "哪位" in question:
        return "name"
    return None


_FOCUS = re.compile(r"\b(?:what|which|whose|how\s+many|how\s+much)\s+([^\W_]+)", re.I)


def _focus_term(question: str) -> str | None:
    """The noun right after the question word, which names what the answer is."""
    match = _FOCUS.search(question)
    if not match:
        return None
    found = terms(match.group(1))
    return found[0] if found else None


def _has_answer_type(kind: str, sentence: str, question_words: frozenset[str]) -> bool:
    """Whether the sentence has a value of the asked kind that the question does not name."""
    words = re.findall(r"[^\W_]+(?:[.,][0-9]+)*", sentence)
    new = [(i, w) for i, w in enumerate(words) if w.lower() not in question_words]
    if kind == "name":
        # a capitalised word, not counting the one capitalised for opening the sentence
        return any(w[:1].isupper() for i, w in new if i > 0)
    if any(any(ch.isdigit() for ch in w) or w.lower() in _NUMBER_WORDS for _, w in new):
        return True
    if _CJK_NUMERAL.search(sentence):
        return True
    return kind == "date" and any(w.lower() in _MONTHS for _, w in new)


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class ExtractiveWeights:
    """Weights of the sentence score, tuned on SQuAD dev with ``bench/extractive_eval.py``.

    The base score is the IDF-weighted share of the question's terms a sentence contains
    (0..1); the other weights are bonuses on that scale. Tuning showed a flat optimum: any
    weight within a factor of two of these moves the SQuAD rate by less than a point.
    """

    bigram: float = 0.3
    """Share of the question's adjacent term pairs that are adjacent in the sentence too."""
    chunk: float = 0.25
    """Coverage of the question by the sentence's whole chunk (finds the right passage)."""
    neighbour: float = 0.1
    """Coverage by the better neighbouring sentence (context of the same passage)."""
    coreference: float = 0.5
    """Share of the previous sentence's matches credited to a sentence opening with a pronoun."""
    rank: float = 0.1
    """Divided by 1 + the chunk's 0-based retrieval rank."""
    answer_type: float = 0.2
    """The sentence has a number/date/name the question asks for and does not contain."""
    focus: float = 0.5
    """Extra weight of the noun a "what/which/how many" asks about ("what stadium ...")."""
    length: float = 0.2
    """Exponent of a length penalty: long sentences match more question words by chance."""
    second_ratio: float = 0.7
    """Add the runner-up sentence when its score is at least this fraction of the best."""
    min_coverage: float = 0.15
    """Say "not in the documents" unless some sentence covers more of the question than this."""
    min_question_share: float = 0.3
    """... and unless more than this share of the question's distinct terms (words that only
    frame the question, such as "year", not counted) occur somewhere in the passages.
    Off-topic passages often have a sentence sharing a frequent word with the question, but
    rarely most of its words: this rule took "not found" on another article's paragraphs from
    81% to 95% on SQuAD dev for 0.3 point of answers containing gold."""
    max_unknown_share: float = 0.6
    """Say "not in the documents" when more than this share of the question's IDF weight is in
    content words that no chunk of the collection holds (``vocabulary.unknown_share``; only
    when the answerer can read the collection's lexical index). Chosen on one half of the
    Chinese handbook and English off-topic questions, checked on the other (docs/LOCATIONS.md);
    adding a condition on the best sentence's coverage did not do better on the first half."""


@dataclass
class Sentence:
    """One sentence of the retrieved chunks, with its terms."""

    text: str
    chunk: int
    """0-based index of its chunk; the citation is ``[chunk + 1]``."""
    position: int
    """0-based index within its chunk."""
    terms: list[str]
    term_set: frozenset[str] = field(init=False)
    quotable: bool = True
    """False for headings and table header rows: context, never the answer."""

    def __post_init__(self) -> None:
        self.term_set = frozenset(self.terms)


@dataclass(frozen=True)
class ScoredSentence:
    sentence: Sentence
    score: float
    coverage: float
    """IDF-weighted share of the question's terms the sentence contains (0..1)."""


@dataclass(frozen=True)
class _Question:
    """What scoring needs to know about the question, computed once."""

    weight: dict[str, float]  # term -> IDF weight (focus term boosted)
    pairs: set[tuple[str, str]]  # adjacent term pairs
    kind: str | None  # expected answer type
    words: frozenset[str]  # lowercased surface words, to tell new values from echoed ones

    def coverage(self, found: frozenset[str]) -> float:
        total = sum(self.weight.values())
        return sum(w for t, w in self.weight.items() if t in found) / total if total else 0.0


# Sentences whose subject refers back: "It was ...", "In 1990, he ...", "他...".
_ANAPHORIC = re.compile(
    r"(?:(?:It|He|She|They|His|Her|Its|Their|This|These|Those|Such|There|The latter|The former)"
    r"\b|(?:[^\W_]+,? ){0,6}?(?:it|he|she|they)\b)|[他她它其该此这]"
)


def _analyse(question: str, sentences: Sequence[Sentence], focus_boost: float) -> _Question:
    df: Counter[str] = Counter()
    for sentence in sentences:
        df.update(sentence.term_set)
    n = len(sentences)
    q_terms = terms(question)
    # IDF within the retrieved set; a term no sentence has weighs as much as the rarest.
    weight = {t: math.log(1 + n / max(df[t], 1)) for t in dict.fromkeys(q_terms)}
    focus = _focus_term(question)
    if focus in weight:
        weight[focus] *= 1 + focus_boost
    return _Question(
        weight=weight,
        pairs=_adjacent_pairs(q_terms),
        kind=_answer_type(question),
        words=frozenset(w.lower() for w in re.findall(r"[^\W_]+", question)),
    )


def _adjacent_pairs(seq: Sequence[str]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in pairwise(seq) if a != b}


def score_sentences(
    question: str, chunks: Sequence[RetrievedChunk], weights: ExtractiveWeights
) -> list[ScoredSentence]:
    """Every sentence of the chunks with its score, best first (ties: earlier chunk first)."""
    by_chunk = [_chunk_sentences(c, chunk.text) for c, chunk in enumerate(chunks)]
    sentences = [s for group in by_chunk for s in group]
    if not sentences:
        return []
    q = _analyse(question, sentences, weights.focus)
    if not q.weight:
        return []
    chunk_cov = [q.coverage(frozenset().union(*(s.term_set for s in group))) for group in by_chunk]
    own = [[q.coverage(s.term_set) for s in group] for group in by_chunk]

    scored: list[ScoredSentence] = []
    for s in sentences:
        group, covs = by_chunk[s.chunk], own[s.chunk]
        coverage = covs[s.position]
        score = coverage
        if s.position > 0 and _ANAPHORIC.match(s.text):
            with_previous = q.coverage(s.term_set | group[s.position - 1].term_set)
            score += weights.coreference * (with_previous - coverage)
        if q.pairs:
            score += weights.bigram * len(q.pairs & _adjacent_pairs(s.terms)) / len(q.pairs)
        score += weights.chunk * chunk_cov[s.chunk]
        neighbours = [covs[i] for i in (s.position - 1, s.position + 1) if 0 <= i < len(covs)]
        score += weights.neighbour * max(neighbours, default=0.0)
        score += weights.rank / (1 + s.chunk)
        score /= (1 + len(s.terms) / 20) ** weights.length
        if q.kind and coverage > 0 and _has_answer_type(q.kind, s.text, q.words):
            score += weights.answer_type
        scored.append(ScoredSentence(s, score, coverage))
    scored = [item for item in scored if item.sentence.quotable]
    scored.sort(key=lambda item: (-item.score, item.sentence.chunk, item.sentence.position))
    return scored


def _chunk_sentences(chunk: int, text: str) -> list[Sentence]:
    """The chunk's sentences; headings and table headers are marked as not quotable.

    A table row also gets the terms of its header row, so "机密级别的数据有什么存储要求"
    finds the row ``机密 | 客户合同 | 加密存储`` under ``级别 | 示例 | 存储要求``; the row
    alone is what is quoted.
    """
    sentences: list[Sentence] = []
    header: Sentence | None = None
    texts = split_sentences(text)
    for position, sentence in enumerate(texts):
        item = Sentence(sentence, chunk, position, terms(sentence))
        if _TABLE_CELL in sentence:
            if header is None:
                header, item.quotable = item, False
            else:
                item.term_set = item.term_set | header.term_set
        else:
            header = None
            # a heading is followed by what it heads; a short last line is not one
            followed = position + 1 < len(texts)
            if followed and _HEADING_LINE.match(sentence) and not sentence.startswith(_BULLETS):
                item.quotable = False
        sentences.append(item)
    return sentences


# Words that frame a question rather than say what it is about ("in which year", "how long",
# "what term"): the answer replaces them, so passages that hold it need not contain them.
# Stemmed, as :func:`terms` returns them.
_QUESTION_FRAME = frozenset(
    terms(
        """year years long time date day month century decade number percent percentage
        amount happen start began begin first last main common term word called name named
        refer describe consider mean"""
    )
) | frozenset({"年", "时间", "日期", "名字", "名称", "叫"})

# --------------------------------------------------------------------------- short answers

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_EN_DATE = re.compile(
    rf"\b(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{3,4}})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{3,4}})?"
    rf"|{_MONTH},?\s+\d{{3,4}}|\d{{3,4}}s?(?:\s+(?:BC|AD|BCE|CE))?)\b"
)
_SCALE = r"(?:\s?%|\s+(?:percent|per\s+cent|thousand|million|billion|trillion|hundred))?"
_EN_NUMBER = re.compile(
    rf"(?:[$€£¥]\s?)?\b\d[\d,]*(?:\.\d+)?\b{_SCALE}"
    rf"|\b(?:{'|'.join(sorted(_NUMBER_WORDS - {'hundred', 'thousand', 'million', 'billion'}))})"
    rf"\b{_SCALE}",
    re.I,
)
_EN_UNIT = re.compile(r"\s+([A-Za-z][a-z]*)")
_ZH_NUMBER = re.compile(
    r"(?:每[年月周天日人次]|约|共)?[\d零一二三四五六七八九十百千万亿两]+(?:[.．]\d+)?\s?"
    r"(?:%|％|个工作日|个月|个|天|年|月|日|号|元|万元|人|位|名|小时|分钟|周|次|岁|倍|间|层|公里|"
    r"张|台|份|项|条|点|公斤|平方米|GB|TB)?"
)
_ZH_DATE = re.compile(
    r"\d{4}\s?年(?:\s?\d{1,2}\s?月)?(?:\s?\d{1,2}\s?日)?|\d{1,2}\s?月\s?\d{1,2}\s?日"
    r"|每月\s?\d{1,2}\s?日|\d{1,2}:\d{2}"
)
_NAME_RUN = re.compile(r"\b[A-Z][\w'’.-]*(?:\s+(?:of|the|de|von|van|and|&)?\s*[A-Z][\w'’.-]*)*")


def answer_span(question: str, sentence: str) -> str | None:
    """The value that answers a number, date or name question, if the sentence has exactly one.

    Values the question already names do not count ("In 2010, how many ..." is not answered
    by 2010). Two or more candidates mean we cannot tell which one answers, and the sentence
    alone is the answer.
    """
    kind = _answer_type(question)
    if kind is None:
        return None
    echoed = question.lower()
    candidates = [c for c in _span_candidates(kind, sentence) if c.lower() not in echoed]
    unique = list(dict.fromkeys(candidates))
    return unique[0] if len(unique) == 1 else None


def _span_candidates(kind: str, sentence: str) -> list[str]:
    if _CJK_RE.search(sentence):
        if kind == "name":
            return []  # Chinese names are not capitalised: no reliable span
        found = [m.group().strip() for m in _ZH_DATE.finditer(sentence)] if kind == "date" else []
        return found or [
            m.group().strip() for m in _ZH_NUMBER.finditer(sentence) if _is_zh_quantity(m)
        ]
    if kind == "name":
        runs = [m.group().rstrip(".") for m in _NAME_RUN.finditer(sentence) if m.start() > 0]
        return [run for run in runs if run.lower() not in STOPWORDS]
    if kind == "date":
        dates = [m.group() for m in _EN_DATE.finditer(sentence)]
        if dates:
            return dates
    return [_with_unit(sentence, m) for m in _EN_NUMBER.finditer(sentence)]


def _is_zh_quantity(match: re.Match[str]) -> bool:
    """Digits, or Chinese numerals with a unit: "两周" and "15天", not the "一" of "一线城市"."""
    value = match.group()
    if any(ch.isdigit() for ch in value):
        return True
    return bool(_CJK_NUMERAL.search(value)) and _CJK_NUMERAL.sub("", value).strip() != ""


def _with_unit(sentence: str, match: re.Match[str]) -> str:
    """A number with the word after it when that word names what is counted ("30 days")."""
    unit = _EN_UNIT.match(sentence, match.end())
    if unit and unit.group(1).lower() not in STOPWORDS and unit.group(1)[0].islower():
        return match.group() + unit.group()
    return match.group()


# --------------------------------------------------------------------------- answerer

UnknownShare = Callable[[str, Sequence[RetrievedChunk]], Awaitable[float | None]]
"""The share of a question's weight in words its collection does not hold at all, or None when
unknown (``vocabulary.CollectionVocabulary.unknown_share``)."""


class ExtractiveAnswerer:
    """Offline answerer: the best sentence or two of the chunks, with ``[n]`` citations."""

    def __init__(
        self,
        weights: ExtractiveWeights | None = None,
        max_sentences: int = 2,
        unknown_share: UnknownShare | None = None,
        grounding: SentenceGrounding | None = None,
    ) -> None:
        self.weights = weights or ExtractiveWeights()
        self.max_sentences = max_sentences
        self.unknown_share = unknown_share
        """Reads the collection's vocabulary for :meth:`stream`; without it only the passages
        decide "not in the documents"."""
        self.grounding = grounding
        """The collection's embedding model, calibrated, as a second judge of the candidate
        sentences (``grounding.py``); None for embedders without a calibration."""
        self.name = "extractive:v4"  # bump when scoring or weights change: it keys the cache

    def answer(
        self,
        question: str,
        chunks: Sequence[RetrievedChunk],
        unknown: float | None = None,
        similarity: float | None = None,
    ) -> str:
        """The whole answer at once (the eval and tests use this; :meth:`stream` wraps it).

        ``unknown`` is the question's :data:`UnknownShare` in the collection, when known;
        ``similarity`` the embedding model's view of the candidate sentences
        (``grounding.SentenceGrounding.similarity`` of :meth:`candidates`), judged by
        :attr:`grounding` when both are there.
        When the question asks for a number, a date or a name and the best sentence, clearly
        ahead of the others, has one such value, the answer is that value on a line of its own,
        followed by that sentence with its citation; otherwise the best sentence or two.
        """
        return self.compose(question, self.candidates(question, chunks), unknown, similarity)

    def candidates(self, question: str, chunks: Sequence[RetrievedChunk]) -> list[ScoredSentence]:
        """The sentences that could answer, best first; none when the passages are not about
        the question (``min_question_share``, ``min_coverage``)."""
        if not self.has_answer(question, chunks):
            return []
        return [
            item
            for item in score_sentences(question, chunks, self.weights)
            if item.coverage > self.weights.min_coverage
        ]

    def compose(
        self,
        question: str,
        scored: Sequence[ScoredSentence],
        unknown: float | None = None,
        similarity: float | None = None,
    ) -> str:
        """The answer from :meth:`candidates`, or "not in the documents" (see :meth:`answer`)."""
        if (
            not scored
            or (unknown is not None and unknown > self.weights.max_unknown_share)
            or (
                self.grounding is not None
                and similarity is not None
                and self.grounding.too_far(question, similarity)
            )
        ):
            return not_found_message(question)
        best = scored[0]
        picked = [best]
        for item in scored[1 : self.max_sentences]:
            if item.score >= self.weights.second_ratio * best.score:
                picked.append(item)
        # A short value only when one sentence stands out: with two close candidates we do not
        # know which one holds the answer, and a wrong value on top would mislead.
        span = answer_span(question, best.sentence.text) if len(picked) == 1 else None
        composed = _compose(picked, chinese=is_chinese(question))
        return composed if span is None else span + "\n\n" + composed

    def has_answer(self, question: str, chunks: Sequence[RetrievedChunk]) -> bool:
        """Whether the passages are about the question at all (see ``min_question_share``)."""
        wanted = set(terms(question)) - _QUESTION_FRAME
        if not wanted or not chunks:
            return False
        present: set[str] = set()
        for chunk in chunks:
            present.update(terms(chunk.text))
        return len(wanted & present) / len(wanted) > self.weights.min_question_share

    async def stream(
        self, question: str, chunks: Sequence[RetrievedChunk], usage: LLMUsage | None = None
    ) -> AsyncIterator[str]:
        """Yield the answer word by word (English) or a few characters at a time (Chinese).

        It calls no LLM: ``usage`` stays at zero tokens. With :attr:`unknown_share`, it reads
        the collection's vocabulary first (one query); with :attr:`grounding`, it embeds the
        question and its best candidate sentences."""
        unknown = await self.unknown_share(question, chunks) if self.unknown_share else None
        scored = self.candidates(question, chunks)
        similarity = None
        foreign = unknown is not None and unknown > self.weights.max_unknown_share
        if self.grounding is not None and scored and not foreign:  # else "not found" already
            texts = [item.sentence.text for item in scored[: self.grounding.sentences]]
            similarity = await self.grounding.similarity(question, texts)
        for piece in stream_pieces(self.compose(question, scored, unknown, similarity)):
            yield piece
            await asyncio.sleep(0)  # let other jobs on the event loop run between pieces

    async def aclose(self) -> None:
        """Nothing to release."""


def _compose(picked: Sequence[ScoredSentence], chinese: bool) -> str:
    """Sentences in document order, each run from one chunk followed by its ``[n]``."""
    ordered = sorted((item.sentence for item in picked), key=lambda s: (s.chunk, s.position))
    if len({s.chunk for s in ordered}) > 1:  # different chunks: best first
        ordered = [item.sentence for item in picked]
    parts: list[str] = []
    for i, sentence in enumerate(ordered):
        parts.append(sentence.text)
        following = ordered[i + 1] if i + 1 < len(ordered) else None
        if following is None or following.chunk != sentence.chunk:
            parts.append(f"[{sentence.chunk + 1}]")
    return ("" if chinese else " ").join(parts)


_PIECE = re.compile(
    rf"\s*[{_CJK}。！？；，、：“”「」（）]{{1,3}}|\s*[^\s{_CJK}。！？；，、：“”「」（）]+|\s+"
)


def stream_pieces(text: str) -> list[str]:
    """Words with their leading space, or runs of up to three CJK characters."""
    return _PIECE.findall(text)
