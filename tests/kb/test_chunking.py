"""Chunker: sizes are respected and chunks end at the largest natural boundary that fits."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from ragserve.kb.chunking import Chunker
from ragserve.kb.loaders import SUPPORTED_EXTENSIONS, load_path

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "ragserve" / "samples"

ZH_SENTENCES = [
    "全职员工每年享有二十三天带薪年假。",
    "未使用的年假最多可结转五天到下一年！",
    "结转的年假必须在三月三十一日之前休完，否则自动作废。",
    "病假需要在第一天上午九点半之前告知直属经理？",
    "连续病假超过三天的，须提供医院出具的诊断证明；",
    "出差补贴为每天一百二十元，用于餐饮和市内交通。",
    "一线城市的住宿标准为每晚六百五十元，省会城市为每晚五百元。",
    "员工应在出差返回后十五个自然日内提交报销单。",
]
EN_SENTENCES = [
    "Full-time employees receive 23 days of paid annual leave per calendar year. ",
    "Up to 5 unused days may be carried over into the next year! ",
    "Do carried-over days expire? ",
    "Yes; they must be taken before 31 March. ",
    "Meals are reimbursed up to 70 USD per day while travelling. ",
    "Any single purchase above 800 USD needs written approval from the department head. ",
]


def without_spaces(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_chinese_sentences_stay_whole():
    text = "".join(ZH_SENTENCES * 3)
    chunks = Chunker(chunk_size=60, chunk_overlap=0).split(text)
    assert len(chunks) > 3
    for chunk in chunks:
        assert len(chunk) <= 60
        assert chunk[-1] in "。！？；", chunk  # ends where a sentence ends
        assert chunk[0] not in "。！？；，", chunk  # punctuation is not pushed to the next one
    assert "".join(chunks) == text  # nothing lost, nothing duplicated without overlap


def test_every_chinese_sentence_is_inside_one_chunk():
    text = "".join(ZH_SENTENCES)
    chunks = Chunker(chunk_size=40, chunk_overlap=10).split(text)
    for sentence in ZH_SENTENCES:
        assert any(sentence in chunk for chunk in chunks), sentence


def test_long_chinese_sentence_splits_at_commas_before_characters():
    sentence = "，".join(["这是一个没有句号的很长的分句"] * 10) + "。"
    chunks = Chunker(chunk_size=50, chunk_overlap=0).split(sentence)
    assert len(chunks) > 1
    assert all(len(chunk) <= 50 for chunk in chunks)
    assert all(chunk.endswith(("，", "。")) for chunk in chunks)


def test_english_sentences_end_with_their_punctuation():
    text = "".join(EN_SENTENCES * 2)
    chunks = Chunker(chunk_size=120, chunk_overlap=0).split(text)
    for chunk in chunks:
        assert len(chunk) <= 120
        assert chunk[-1] in ".!?;", chunk
        assert chunk == chunk.strip()
    assert without_spaces("".join(chunks)) == without_spaces(text)


def test_paragraphs_are_preferred_over_sentences():
    first = "第一段。" + "这一段讲年假的规定。" * 4
    second = "Second paragraph. It is about expenses and receipts."
    chunks = Chunker(chunk_size=70, chunk_overlap=0).split(f"{first}\n\n{second}")
    assert chunks == [first, second]


def test_overlap_repeats_the_end_of_the_previous_chunk():
    words = " ".join(f"word{i:03d}" for i in range(200))
    chunks = Chunker(chunk_size=100, chunk_overlap=30).split(words)
    assert len(chunks) > 5
    for previous, current in itertools.pairwise(chunks):
        assert len(current) <= 100
        assert current.split()[0] in previous.split()  # shares at least one word


@pytest.mark.parametrize("size", [1, 7, 50, 333])
def test_size_is_respected_even_without_any_separator(size: int):
    text = "流明机器人" * 200 + "x" * 500
    chunks = Chunker(chunk_size=size, chunk_overlap=0).split(text)
    assert all(0 < len(chunk) <= size for chunk in chunks)
    assert "".join(chunks) == text


def test_short_text_is_one_stripped_chunk_and_blank_text_none():
    chunker = Chunker()
    assert chunker.split("  短文本。 Short text.\n\n") == ["短文本。 Short text."]
    assert chunker.split("") == []
    assert chunker.split(" \n\n \t ") == []


def test_no_empty_chunks_from_blank_lines():
    text = "A.\n\n\n\n   \n\nB.\n\n \n\nC."
    assert Chunker(chunk_size=3, chunk_overlap=0).split(text) == ["A.", "B.", "C."]


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (-5, 0), (100, 100), (100, 150), (10, -1)])
def test_invalid_sizes(size: int, overlap: int):
    with pytest.raises(ValueError):
        Chunker(chunk_size=size, chunk_overlap=overlap)


def test_defaults():
    chunker = Chunker()
    assert (chunker.chunk_size, chunker.chunk_overlap) == (800, 100)


def test_samples_chunk_within_size():
    chunker = Chunker(chunk_size=200, chunk_overlap=30)
    for path in SAMPLES.iterdir():
        if path.suffix not in SUPPORTED_EXTENSIONS:
            continue
        chunks = chunker.split(load_path(path).text)
        assert chunks, path
        assert all(len(chunk) <= 200 for chunk in chunks), path
