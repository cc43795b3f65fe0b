"""The offline extractive answerer: sentence choice, citations, "not found", and SQuAD quality."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from ragserve.kb.types import RetrievedChunk
from ragserve.rag.answerers import OpenAIChatAnswerer, answerer_from_settings
from ragserve.rag.answerers.extractive import ExtractiveAnswerer, split_sentences, terms
from ragserve.rag.prompts import NOT_FOUND_EN, NOT_FOUND_ZH
from ragserve.settings import Settings
from support import ROOT, SQUAD_SAMPLE

# Quality floors on the vendored SQuAD sample (tests/data/squad: 288 paragraphs, 575
# questions), measured with seed 0 and set a little below the measurement
# (bench/extractive_eval.py; before the "share of the question" gate: 90.4% and 78.0%):
# - the answer contains a gold answer: measured 90.1% of 575 (90.8% on 2,000 questions of the
#   full dev set);
SQUAD_CONTAINS_GOLD_FLOOR = 0.88
# - asked against another article's paragraphs, it says "not found": measured 92.0% of 200
#   (94.6% of 500 on the full dev set).
SQUAD_NOT_FOUND_FLOOR = 0.89
# - short answers (a value on its own line): measured on 7.7% of answers, the value right
#   (holds a gold answer or is held in one) for 88.6% of them.
SQUAD_SHORT_ANSWER_RIGHT_FLOOR = 0.82


def _chunks(*texts: str) -> list[RetrievedChunk]:
    return [
        RetrievedChunk(f"c{i}", f"d{i}", f"doc{i}.md", text, round(0.9 - 0.1 * i, 2))
        for i, text in enumerate(texts)
    ]


ENGLISH = _chunks(
    "Acme Corp. was founded in 1998 by Dr. Jane Smith in Portland. The company moved its "
    "headquarters to Seattle in 2005.\nIt now employs about 3.5 thousand people.",
    "Refunds are available within 30 days of purchase. After that, customers get store credit.",
    "# Security\nAll laptops must use full-disk encryption. Passwords rotate every 90 days.",
)
CHINESE = _chunks(
    "公司成立于2010年，总部位于上海。公司目前有员工约300人！\n我们的使命是让知识更容易获取。",
    "员工每年享有15天带薪年假。年假需要提前两周向直属经理申请；未使用的年假可以顺延到下一年。",
    "报销流程：员工应在费用发生后30天内提交发票。财务部门每月结算一次。",
)


@pytest.fixture
def answerer() -> ExtractiveAnswerer:
    return ExtractiveAnswerer()


def test_chosen_when_no_llm_is_configured() -> None:
    offline = answerer_from_settings(Settings(llm_base_url=None))
    assert isinstance(offline, ExtractiveAnswerer)
    assert offline.name == "extractive:v4"
    online = answerer_from_settings(Settings(llm_base_url="http://llm:8000/v1"))
    assert isinstance(online, OpenAIChatAnswerer)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who founded Acme?", "by Dr. Jane Smith in Portland. [1]"),
        ("When did the company move to Seattle?", "to Seattle in 2005. [1]"),
        ("How many people does Acme employ?", "about 3.5 thousand people. [1]"),
        ("How long do customers have to ask for a refund?", "within 30 days of purchase. [2]"),
        ("How often do passwords rotate?", "Passwords rotate every 90 days. [3]"),
    ],
)
def test_english_picks_the_right_sentence(
    answerer: ExtractiveAnswerer, question: str, expected: str
) -> None:
    answer = answerer.answer(question, ENGLISH)
    assert expected in answer
    assert answer.count("[") <= 2  # one or two sentences, each cited


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("员工每年有多少天年假？", "员工每年享有15天带薪年假。[2]"),
        ("公司总部在哪里？", "总部位于上海。"),
        ("报销需要在多少天内提交发票？", "30天内提交发票。"),
        ("财务部门多久结算一次？", "财务部门每月结算一次。[3]"),
    ],
)
def test_chinese_picks_the_right_sentence(
    answerer: ExtractiveAnswerer, question: str, expected: str
) -> None:
    answer = answerer.answer(question, CHINESE)
    assert expected in answer
    assert " " not in answer  # Chinese answers are not glued with spaces


def test_says_plainly_when_nothing_matches(answerer: ExtractiveAnswerer) -> None:
    assert answerer.answer("What is the capital of Mongolia?", ENGLISH) == NOT_FOUND_EN
    assert answerer.answer("火星上有水吗？", CHINESE) == NOT_FOUND_ZH
    # the language follows the question, not the documents
    assert answerer.answer("火星上有水吗？", ENGLISH) == NOT_FOUND_ZH
    assert answerer.answer("Is there water on Mars?", CHINESE) == NOT_FOUND_EN
    assert answerer.answer("Who founded Acme?", []) == NOT_FOUND_EN


@pytest.mark.parametrize(
    ("question", "chunks", "value", "sentence"),
    [
        ("How many people does Acme employ?", ENGLISH, "3.5 thousand people", "It now employs"),
        ("How often do passwords rotate?", ENGLISH, "90 days", "Passwords rotate every 90 days."),
        ("员工每年有多少天年假？", CHINESE, "15天", "员工每年享有15天带薪年假。[2]"),
        ("公司成立于哪一年？", CHINESE, "2010年", "公司成立于2010年，总部位于上海。[1]"),
    ],
)
def test_short_value_first_then_the_sentence_that_supports_it(
    answerer: ExtractiveAnswerer,
    question: str,
    chunks: list[RetrievedChunk],
    value: str,
    sentence: str,
) -> None:
    answer = answerer.answer(question, chunks)
    first, _, rest = answer.partition("\n\n")
    assert first == value
    assert sentence in rest and rest.count("[") == 1


def test_no_short_value_when_the_sentence_has_several(answerer: ExtractiveAnswerer) -> None:
    # "founded in 1998 by Dr. Jane Smith in Portland": two names, which one answers "who"?
    answer = answerer.answer("Who founded Acme?", ENGLISH)
    assert answer.startswith("Acme Corp. was founded")
    assert answerer.answer("What is the refund policy?", ENGLISH).startswith("Refunds are")


def test_says_not_found_when_only_a_common_word_matches(answerer: ExtractiveAnswerer) -> None:
    # "company" and "people" occur in the passages, the question is about something else
    question = "How many people attended the company's annual football championship final?"
    assert answerer.answer(question, ENGLISH) == NOT_FOUND_EN
    assert answerer.answer("公司足球联赛的冠军奖杯是什么颜色？", CHINESE) == NOT_FOUND_ZH


def test_headings_of_a_chunk_are_never_quoted(answerer: ExtractiveAnswerer) -> None:
    section = {"_location": {"page": None, "section": ["Security", "Passwords"]}}
    chunk = RetrievedChunk("c", "d", "it.md", "Passwords rotate every 90 days.", 0.9, section)
    answer = answerer.answer("How often do passwords rotate?", [chunk])
    assert "Security" not in answer and "90 days" in answer


async def test_streams_words_and_small_cjk_runs(answerer: ExtractiveAnswerer) -> None:
    question = "When did the company move to Seattle?"
    pieces = [piece async for piece in answerer.stream(question, ENGLISH)]
    assert "".join(pieces) == answerer.answer(question, ENGLISH)
    assert len(pieces) > 5 and all(len(p.split()) == 1 for p in pieces)

    question = "员工每年有多少天年假？"
    pieces = [piece async for piece in answerer.stream(question, CHINESE)]
    assert "".join(pieces) == answerer.answer(question, CHINESE)
    assert len(pieces) > 3 and max(len(p.strip()) for p in pieces) <= 3
    await answerer.aclose()


def test_sentence_splitting() -> None:
    text = (
        "Dr. Smith paid $3.5 million in the U.S. Army era. He left e.g. early! Did he?\n"
        "# Heading\n- item one\n- item two\n"
        "A line wrapped by the PDF layout that goes on and on and\n"
        "continues here. 中文第一句。第二句！第三句？还有；最后"
    )
    assert split_sentences(text) == [
        "Dr. Smith paid $3.5 million in the U.S. Army era.",
        "He left e.g. early!",
        "Did he?",
        "# Heading",
        "- item one",
        "- item two",
        "A line wrapped by the PDF layout that goes on and on and continues here.",
        "中文第一句。",
        "第二句！",
        "第三句？",
        "还有；",
        "最后",
    ]


def test_terms_stem_english_and_use_chinese_bigrams() -> None:
    assert terms("The cats were running quickly") == ["cat", "run", "quick"]
    assert terms("Located near the locations") == ["locat", "near", "locat"]
    assert terms("员工应在30天内提交发票") == [
        "员工",
        "工应",
        "应在",
        "30",
        "天内",
        "内提",
        "提交",
        "交发",
        "发票",
    ]


def _load_eval() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "ragserve_bench_extractive_eval", ROOT / "bench" / "extractive_eval.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_squad_sample_contains_gold_answers(answerer: ExtractiveAnswerer) -> None:
    bench = _load_eval()
    corpus, questions = bench.load(SQUAD_SAMPLE)
    report = bench.evaluate(answerer, bench.build_cases(corpus, questions, n=575, seed=0))
    assert report.n == 575
    assert report.contain_gold >= SQUAD_CONTAINS_GOLD_FLOOR, report.lines()
    assert report.short_answers >= 0.05, report.lines()
    assert report.short_answer_right >= SQUAD_SHORT_ANSWER_RIGHT_FLOOR, report.lines()


def test_squad_sample_says_not_found_for_other_articles(answerer: ExtractiveAnswerer) -> None:
    bench = _load_eval()
    corpus, questions = bench.load(SQUAD_SAMPLE)
    report = bench.evaluate(answerer, bench.build_negative_cases(corpus, questions, n=200, seed=0))
    assert report.n == 200
    assert report.not_found >= SQUAD_NOT_FOUND_FLOOR, report.lines()
