"""The offline answerer says "not in the documents" for questions its collection does not
answer, on real ingested documents (PostgreSQL, the bundled embedder, hybrid retrieval), in
Chinese and English, and still answers the questions it does.

The off-topic questions here reuse the documents' words ("公司", "密码", "policy"): from the
retrieved passages alone, the answerer quotes a sentence for most of them; the collection's
vocabulary (a word it never uses) and the embedding model's check of the candidate sentences
(``grounding.py``) are what tell them apart. A misspelt word still counts as the collection's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.lexical import WordFrequencies
from ragserve.kb.store import KnowledgeStore
from ragserve.rag.answerers import answerer_from_settings
from ragserve.rag.answerers.base import Answerer
from ragserve.rag.answerers.extractive import ExtractiveAnswerer, ExtractiveWeights
from ragserve.rag.answerers.grounding import SentenceGrounding, calibration_for
from ragserve.rag.answerers.vocabulary import (
    CollectionVocabulary,
    ContentWord,
    TextVocabulary,
    content_words,
    edit_distance,
    unknown_share,
)
from ragserve.rag.prompts import NOT_FOUND_EN, NOT_FOUND_ZH
from ragserve.rag.retrieval import Retriever
from ragserve.settings import Settings
from support.processes import ROOT

ZH_DOCUMENTS = sorted((ROOT / "bench" / "data" / "zh_handbook").glob("*_zh.*"))
EN_DOCUMENTS = sorted((ROOT / "src" / "ragserve" / "samples").glob("*_en.*"))

ZH_OFF_TOPIC = [
    "公司的股票代码是多少？",
    "公司成立于哪一年？",
    "公司的使命是什么？",
    "新员工的导师是谁？",
]
ZH_ANSWERED = [("婚假有几天？", "13天"), ("密码多久要换一次？", "90天")]
EN_OFF_TOPIC = [
    "What is the company's stock ticker symbol?",
    "Who painted the ceiling of the Sistine Chapel?",
    "How do I make sourdough bread?",
    "What is the maternity leave policy in Germany?",
]
EN_ANSWERED = [
    ("How many days of paid annual leave do full-time employees get per year?", "23"),
    ("Where do new hires pick up their laptop?", "3.14"),
]


async def answers(
    answerer: Answerer, retriever: Retriever, collection: str, questions: Sequence[str]
) -> list[str]:
    out = []
    for question in questions:
        chunks = await retriever.retrieve(question, collection=collection, top_k=4)
        out.append("".join([piece async for piece in answerer.stream(question, chunks)]))
    return out


@pytest.mark.parametrize(
    ("collection", "documents", "off_topic", "answered", "not_found"),
    [
        ("zh", ZH_DOCUMENTS, ZH_OFF_TOPIC, ZH_ANSWERED, NOT_FOUND_ZH),
        ("en", EN_DOCUMENTS, EN_OFF_TOPIC, EN_ANSWERED, NOT_FOUND_EN),
    ],
)
async def test_off_topic_questions_are_not_in_the_documents(
    ingestor: Ingestor,
    kb: KnowledgeStore,
    embedder: LocalEmbedder,
    collection: str,
    documents: list[Path],
    off_topic: list[str],
    answered: list[tuple[str, str]],
    not_found: str,
) -> None:
    assert len(documents) >= 4
    await ingestor.ingest(collection, [IngestItem(source=p.name, path=p) for p in documents])
    retriever = Retriever(kb, embedder, mode="hybrid")
    answerer = answerer_from_settings(Settings(llm_base_url=None), store=kb, embedder=embedder)
    assert isinstance(answerer, ExtractiveAnswerer) and answerer.unknown_share is not None
    assert answerer.grounding is not None  # the bundled model has a calibration

    assert await answers(answerer, retriever, collection, off_topic) == [not_found] * len(off_topic)
    # From the passages alone most of them get a (wrong) answer: the vocabulary decides.
    blind = await answers(ExtractiveAnswerer(), retriever, collection, off_topic)
    assert sum(answer != not_found for answer in blind) >= len(off_topic) // 2

    questions = [question for question, _ in answered]
    for (_, gold), answer in zip(
        answered, await answers(answerer, retriever, collection, questions), strict=True
    ):
        assert gold in answer


def test_unknown_share_weighs_words_the_collection_lacks_by_rarity() -> None:
    words = content_words("出国出差的住宿标准是多少？")
    assert [w.word for w in words] == ["出国", "出差", "住宿", "标准"]  # no 的/是/多少
    counts = {"出国": 0, "出差": 5, "住宿": 8, "标准": 30}
    frequencies = WordFrequencies(chunks=100, words=counts)
    share = unknown_share(words, frequencies)
    assert 0.3 < share < 0.6  # 出国 is missing: the heaviest of the four, not all of them
    assert unknown_share(words, WordFrequencies(chunks=100, words={**counts, "出国": 1})) == 0


def test_english_words_are_looked_up_by_a_prefix() -> None:
    words = content_words("Who announced the casualties of the war?")
    assert words == [
        ContentWord("announced", "announ"),
        ContentWord("casualties", "casualt"),
        ContentWord("war"),
    ]


def test_a_misspelt_word_counts_as_the_word_it_misspells() -> None:
    texts = ["Platyctenida live on the sea floor.", "Cydippids live in open water."]
    question = "Where do platycenida live?"
    assert TextVocabulary(texts, typos=False).unknown_share(question) > 0.5
    assert TextVocabulary(texts).unknown_share(question) == 0
    assert edit_distance("lpatop", "laptop", 1) == 1  # two neighbours swapped: one edit
    assert edit_distance("mongolia", "magnolia", 1) == 2  # another word, not a typo


def test_only_a_calibrated_embedder_checks_the_sentences(embedder: LocalEmbedder) -> None:
    assert calibration_for(embedder.name) is not None
    assert SentenceGrounding.for_embedder(embedder) is not None
    # Another model's cosines sit elsewhere: without a calibration the lexical rules decide.
    other = "openai:text-embedding-3-small@https://api.example"
    assert calibration_for(other) is None


TYPO_TEXTS = [  # three chunks; "live" in each, so the question's weight is in its other word
    "Platyctenida live on the sea floor and look like flatworms.",
    "Cydippids live in open water and catch prey with two tentacles.",
    "Most comb jellies live in the sea; a few species live in brackish water.",
]


async def test_a_misspelt_question_is_answered(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    await ingestor.ingest(
        "typos", [IngestItem(source=f"ct{i}.txt", text=t) for i, t in enumerate(TYPO_TEXTS)]
    )
    question = "Where do platycenida live?"  # the documents spell it Platyctenida
    chunks = await Retriever(kb, embedder, mode="hybrid").retrieve(
        question, collection="typos", top_k=4
    )
    answerer = answerer_from_settings(Settings(llm_base_url=None), store=kb, embedder=embedder)
    assert "sea floor" in "".join([piece async for piece in answerer.stream(question, chunks)])
    # Without counting misspellings, the one informative word looks foreign: "not found".
    strict = CollectionVocabulary(kb, typos=False)
    assert await strict.unknown_share(question, chunks) > ExtractiveWeights().max_unknown_share


async def test_the_model_rejects_a_sentence_that_only_shares_words(
    embedder: LocalEmbedder,
) -> None:
    grounding = SentenceGrounding.for_embedder(embedder)
    assert grounding is not None
    sentence = ["Pick up your laptop at the IT Service Desk in Room 3.14 on the third floor."]
    on_topic = await grounding.similarity("Where do new hires pick up their laptop?", sentence)
    off_topic = await grounding.similarity("Which floor of the Louvre has the Mona Lisa?", sentence)
    assert not grounding.too_far("Where do new hires pick up their laptop?", on_topic)
    assert grounding.too_far("Which floor of the Louvre has the Mona Lisa?", off_topic)
