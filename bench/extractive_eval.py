"""How often does the offline extractive answerer's answer contain a gold SQuAD answer?

Retrieval is simulated so that only the answerer is measured: each question gets its gold
paragraph plus ``--others`` other paragraphs of the same Wikipedia article (hard distractors:
same topic, same names), the gold one first with probability ``--gold-first`` and at a random
later rank otherwise. The metric is the share of answers that contain any gold answer string
(case-insensitive). A negative control asks each question against paragraphs of a different
article, where the right reply is "the documents do not contain the answer".

The answerer also sees, as in the service, the share of the question's words that the whole
collection (here: every paragraph of the data) does not hold (``vocabulary.TextVocabulary``,
the same counts the service reads from the lexical index); ``--no-vocabulary`` measures it
without, as before that signal existed. Its off-topic questions (``bench/data/offtopic.jsonl``)
need real retrieval: ``bench/zh_eval.py --english`` asks them of the ingested sample.

With the bundled embedder (as the service, whose collections it embeds), the answerer also
checks its candidate sentences with that model (``grounding.py``: the question's highest cosine
with its best few sentences, against the model's calibrated threshold); ``--no-grounding``
measures it without.

    python bench/extractive_eval.py --squad /path/to/dev-v1.1.json --n 2000 --seed 0

Questions that ask for a number, a date or a name may get a short answer (the value on a line
of its own, then the sentence it comes from): the report gives how often, and how often that
short answer holds a gold answer (or is held in one: "3.5 thousand people" for "3.5 thousand").

Data: SQuAD v1.1 dev, ``--squad PATH`` (see ``_common.load_squad`` for the accepted forms) or
``RAGSERVE_SQUAD_DIR``; by default the small sample vendored in ``tests/data/squad``.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import (
    DEFAULT_SQUAD,
    BenchSetupError,
    Paragraph,
    Question,
    add_squad_arg,
    bench_parser,
    load_squad,
    local_embedder,
)
from ragserve.kb.embeddings import warm_up
from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers.extractive import ExtractiveAnswerer
from ragserve.rag.answerers.grounding import SentenceGrounding
from ragserve.rag.answerers.vocabulary import TextVocabulary
from ragserve.rag.prompts import NOT_FOUND_EN, NOT_FOUND_ZH
from ragserve.settings import Settings


@dataclass(frozen=True)
class Case:
    question: Question
    chunks: tuple[RetrievedChunk, ...]
    gold_rank: int | None  # 0-based position of the gold paragraph; None for negatives


@dataclass(frozen=True)
class Report:
    n: int
    contain_gold: float
    contain_gold_when_first: float
    contain_gold_when_later: float
    not_found: float
    mean_answer_words: float
    short_answers: float
    """Share of answers that open with a short value (number, date, name)."""
    short_answer_right: float
    """Of those, the share whose value contains a gold answer or is contained in one."""

    def lines(self) -> list[str]:
        return [
            f"questions:                {self.n}",
            f"answer contains gold:     {self.contain_gold:.1%}",
            f"  gold paragraph first:   {self.contain_gold_when_first:.1%}",
            f"  gold paragraph later:   {self.contain_gold_when_later:.1%}",
            f"said not found:           {self.not_found:.1%}",
            f"mean answer length:       {self.mean_answer_words:.1f} words",
            f"short answers:            {self.short_answers:.1%}"
            f" (value right: {self.short_answer_right:.1%})",
        ]


def default_data_dir() -> Path:
    return Path(os.environ.get("RAGSERVE_SQUAD_DIR", DEFAULT_SQUAD))


def load(path: Path) -> tuple[dict[str, Paragraph], list[Question]]:
    """The corpus by paragraph id, and the questions in file order."""
    squad = load_squad(path)
    return {p.id: p for p in squad.paragraphs}, squad.questions


def _chunk(paragraph: Paragraph, rank: int) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=paragraph.id,
        document_id=paragraph.title,
        source=f"{paragraph.title}.txt",
        text=paragraph.text,
        score=round(0.9 - 0.05 * rank, 3),
    )


def build_cases(
    corpus: dict[str, Paragraph],
    questions: Sequence[Question],
    n: int,
    seed: int,
    others: int = 3,
    gold_first: float = 0.6,
) -> list[Case]:
    """``n`` random questions, each with its gold paragraph among same-article distractors."""
    rng = random.Random(seed)
    by_title: dict[str, list[str]] = defaultdict(list)
    for paragraph in corpus.values():
        by_title[paragraph.title].append(paragraph.id)
    cases: list[Case] = []
    for question in rng.sample(list(questions), min(n, len(questions))):
        gold = corpus[question.doc_id]
        pool = [pid for pid in by_title[gold.title] if pid != gold.id]
        picked = [corpus[pid] for pid in rng.sample(pool, min(others, len(pool)))]
        rng.shuffle(picked)
        rank = 0 if rng.random() < gold_first or not picked else rng.randint(1, len(picked))
        picked.insert(rank, gold)
        chunks = tuple(_chunk(p, i) for i, p in enumerate(picked))
        cases.append(Case(question, chunks, rank))
    return cases


def build_negative_cases(
    corpus: dict[str, Paragraph], questions: Sequence[Question], n: int, seed: int, k: int = 4
) -> list[Case]:
    """``n`` random questions asked against ``k`` paragraphs of one other article."""
    rng = random.Random(seed + 1)
    by_title: dict[str, list[str]] = defaultdict(list)
    for paragraph in corpus.values():
        by_title[paragraph.title].append(paragraph.id)
    titles = sorted(by_title)
    cases: list[Case] = []
    for question in rng.sample(list(questions), min(n, len(questions))):
        own = corpus[question.doc_id].title
        title = rng.choice([t for t in titles if t != own])
        pids = rng.sample(by_title[title], min(k, len(by_title[title])))
        cases.append(Case(question, tuple(_chunk(corpus[p], i) for i, p in enumerate(pids)), None))
    return cases


def contains_gold(answer: str, answers: Sequence[str]) -> bool:
    lowered = answer.lower()
    return any(gold.lower() in lowered for gold in answers)


def short_answer(answer: str) -> str | None:
    """The short value an answer opens with, if it has one (a first line without a citation)."""
    first, _, rest = answer.partition("\n\n")
    return first if rest and "[" not in first else None


def short_answer_right(value: str, answers: Sequence[str]) -> bool:
    lowered = value.lower()
    return any(g.lower() in lowered or lowered in g.lower() for g in answers if g.strip())


def is_not_found(answer: str) -> bool:
    return answer in (NOT_FOUND_EN, NOT_FOUND_ZH)


async def similarities(
    answerer: ExtractiveAnswerer, cases: Sequence[Case]
) -> dict[str, float | None]:
    """The grounding check's value for each case, by question id (as :meth:`stream` computes
    it); empty without :attr:`ExtractiveAnswerer.grounding`."""
    grounding = answerer.grounding
    if grounding is None:
        return {}
    out: dict[str, float | None] = {}
    for case in cases:
        scored = answerer.candidates(case.question.question, case.chunks)
        texts = [item.sentence.text for item in scored[: grounding.sentences]]
        out[_key(case)] = (
            await grounding.similarity(case.question.question, texts) if texts else None
        )
    return out


def _key(case: Case) -> str:
    return f"{case.question.id}/{case.chunks[0].chunk_id}"


def evaluate(
    answerer: ExtractiveAnswerer,
    cases: Sequence[Case],
    vocabulary: TextVocabulary | None = None,
    similarity: dict[str, float | None] | None = None,
) -> Report:
    """Answer every case (with the collection's vocabulary and the grounding check's values,
    when given) and summarise."""
    hits: list[bool] = []
    first: list[bool] = []
    later: list[bool] = []
    not_found = 0
    lengths: list[int] = []
    short_right: list[bool] = []
    for case in cases:
        answer = answer_case(answerer, case, vocabulary, similarity)
        hit = contains_gold(answer, case.question.answers)
        hits.append(hit)
        (first if case.gold_rank == 0 else later).append(hit)
        not_found += is_not_found(answer)
        lengths.append(len(answer.split()))
        value = short_answer(answer)
        if value is not None:
            short_right.append(short_answer_right(value, case.question.answers))
    return Report(
        n=len(cases),
        contain_gold=_rate(hits),
        contain_gold_when_first=_rate(first),
        contain_gold_when_later=_rate(later),
        not_found=not_found / len(cases) if cases else 0.0,
        mean_answer_words=statistics.fmean(lengths) if lengths else 0.0,
        short_answers=len(short_right) / len(cases) if cases else 0.0,
        short_answer_right=_rate(short_right),
    )


def answer_case(
    answerer: ExtractiveAnswerer,
    case: Case,
    vocabulary: TextVocabulary | None,
    similarity: dict[str, float | None] | None = None,
) -> str:
    question = case.question.question
    unknown = vocabulary.unknown_share(question) if vocabulary else None
    value = (similarity or {}).get(_key(case))
    return answerer.answer(question, case.chunks, unknown, value)


async def with_grounding(
    cases: Sequence[Case], negatives: Sequence[Case]
) -> tuple[ExtractiveAnswerer, dict[str, float | None]]:
    """The answerer with the bundled embedder's grounding check, and its values for the cases."""
    embedder = local_embedder(Settings())
    try:
        await warm_up(embedder)
        answerer = ExtractiveAnswerer(grounding=SentenceGrounding.for_embedder(embedder))
        return answerer, await similarities(answerer, [*cases, *negatives])
    finally:
        await embedder.aclose()


def _rate(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    add_squad_arg(parser)
    parser.set_defaults(squad=default_data_dir())
    parser.add_argument("--n", type=int, default=2000, help="questions to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--others", type=int, default=3, help="distractor paragraphs")
    parser.add_argument("--gold-first", type=float, default=0.6)
    parser.add_argument("--max-sentences", type=int, default=2)
    parser.add_argument("--negatives", type=int, default=500, help="negative-control questions")
    parser.add_argument("--show-misses", type=int, default=0, help="print this many misses")
    parser.add_argument(
        "--no-vocabulary", action="store_true", help="without the collection's vocabulary"
    )
    parser.add_argument(
        "--no-grounding", action="store_true", help="without the embedding model's check"
    )
    args = parser.parse_args(argv)
    try:
        corpus, questions = load(args.squad)
    except BenchSetupError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    cases = build_cases(corpus, questions, args.n, args.seed, args.others, args.gold_first)
    negative_cases = build_negative_cases(corpus, questions, args.negatives, args.seed)
    vocabulary = None if args.no_vocabulary else TextVocabulary(p.text for p in corpus.values())
    started = time.perf_counter()
    similarity: dict[str, float | None] = {}
    if args.no_grounding:
        answerer = ExtractiveAnswerer(max_sentences=args.max_sentences)
    else:
        answerer, similarity = asyncio.run(with_grounding(cases, negative_cases))
        answerer.max_sentences = args.max_sentences
    report = evaluate(answerer, cases, vocabulary, similarity)
    elapsed = time.perf_counter() - started
    print(
        f"{answerer.name}, max {args.max_sentences} sentence(s), seed {args.seed},"
        f" vocabulary {'off' if vocabulary is None else 'on'},"
        f" grounding {'off' if answerer.grounding is None else 'on'}"
    )
    print("\n".join(report.lines()))
    print(f"time per question:        {1000 * elapsed / max(1, report.n):.2f} ms (incl. embedding)")
    if args.negatives:
        negatives = evaluate(answerer, negative_cases, vocabulary, similarity)
        print(
            f"negative control: said not found for {negatives.not_found:.1%} "
            f"of {negatives.n} questions asked against another article"
        )
    shown = 0
    for case in cases:
        if shown >= args.show_misses:
            break
        answer = answer_case(answerer, case, vocabulary, similarity)
        if not contains_gold(answer, case.question.answers):
            shown += 1
            print(
                f"\nQ: {case.question.question}\n   gold: {case.question.answers} "
                f"(rank {case.gold_rank})\n   got:  {answer}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
