"""How a conversation becomes one self-contained question (no service needed)."""

from __future__ import annotations

import pytest

from ragserve.api.openai_history import MAX_TURNS, is_follow_up, question_of
from ragserve.api.openai_schemas import ChatMessage


def chat(*turns: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role=role, content=text) for role, text in turns]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "Is it free?",
        "And the parking?",
        "what about contractors?",
        "Why?",
        "Parking?",
        "How long does that take?",
        "年假呢？",
        "那么合同工呢",
        "它在哪里？",
        "还有别的吗",
    ],
)
def test_follow_ups(text: str) -> None:
    assert is_follow_up(text)


@pytest.mark.parametrize(
    "text",
    [
        "What is the guest Wi-Fi network called?",
        "How many days of paid annual leave do full-time employees get?",
        "Where can employees park their cars during the week?",
        "全职员工每年有多少天带薪年假？",
        # A pronoun in a long, complete question does not make it a follow-up.
        "What does the handbook say about the process for requesting leave when it is urgent?",
    ],
)
def test_standalone_questions(text: str) -> None:
    assert not is_follow_up(text)


def test_question_of_a_conversation() -> None:
    assert question_of(chat(("user", "Where do employees park?"))) == "Where do employees park?"
    follow_up = chat(
        ("system", "Be brief."),
        ("user", "Where do employees park?"),
        ("assistant", "On level B2 [1]."),
        ("user", "Is it free?"),
    )
    assert question_of(follow_up) == "Where do employees park? Is it free?"
    # A chain of follow-ups reaches back to the question they lean on, MAX_TURNS at most.
    chain = chat(
        ("user", "Tell me about the office."),
        ("user", "Where do employees park?"),
        ("user", "Is it free?"),
        ("user", "And for visitors?"),
    )
    assert MAX_TURNS == 3
    assert question_of(chain) == "Where do employees park? Is it free? And for visitors?"
    # Text parts count; other parts (images) do not; an empty last question is no question.
    parts = [
        ChatMessage(role="user", content=[{"type": "text", "text": "Wi-Fi name?"}]),  # type: ignore[list-item]
    ]
    assert question_of(parts) == "Wi-Fi name?"
    assert question_of(chat(("user", "Where?"), ("user", "   "))) is None
    assert question_of(chat(("system", "Be brief."))) is None
