"""The question of a chat: the last user message, made self-contained by the ones before.

Chat clients send the whole conversation; ragserve answers one question over the documents.
A follow-up such as "Is it free?" or "年假呢？" means nothing to retrieval on its own, so when
the last user message looks like a follow-up, the previous user message is put in front of it
("Where do employees park? Is it free?"), and so on back while those look like follow-ups too
(at most ``MAX_TURNS`` messages). No extra LLM call: cheap, deterministic, cacheable.

What counts as a follow-up (docs/OPENAI.md):

- it starts with a continuation word: "and", "also", "but", "so", "then", "what about",
  "how about", "same for", "why", "那", "那么", "还有", "另外", "而且", "并且", "它", "这", "那个";
- or it ends with "呢" (optionally followed by a question mark);
- or it is short (at most ``SHORT_WORDS`` words, or ``SHORT_CJK`` Chinese characters) and
  contains a pronoun that points outside it ("it", "its", "they", "them", "this", "that",
  "these", "those", "he", "him", "she", "her"; "它", "他", "她", "这", "那", "其", "该");
- or it is very short: at most ``TINY_WORDS`` words or ``TINY_CJK`` Chinese characters.

System, assistant and tool messages are not used (the assistant's own words would steer the
search towards what was already answered).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragserve.api.openai_schemas import ChatMessage
from ragserve.text import CJK_IDEOGRAPHS

MAX_TURNS = 3
"""User messages joined at most (the last one and up to two before it)."""
MAX_QUESTION_CHARS = 8000
"""The longest question a job takes (``AnswerRequest.query``); older turns are dropped first."""
SHORT_WORDS, SHORT_CJK = 8, 16
TINY_WORDS, TINY_CJK = 3, 4

_CONTINUATION = re.compile(
    r"^\W*(?:and|also|but|so|then|what about|how about|same for|why)\b"
    r"|^\W*(?:那么|那个|那|还有|另外|而且|并且|它|这)",
    re.IGNORECASE,
)
_TRAILING_NE = re.compile(r"呢\s*[?？]?\s*$")
_PRONOUN = re.compile(
    r"\b(?:it|its|they|them|this|that|these|those|he|him|she|her)\b"
    r"|[它他她这那其该]",
    re.IGNORECASE,
)
_WORD = re.compile(rf"[^\W{CJK_IDEOGRAPHS}]+")
_CJK_CHAR = re.compile(f"[{CJK_IDEOGRAPHS}]")


def is_follow_up(text: str) -> bool:
    """Whether ``text`` likely leans on the message before it (see the module docstring)."""
    if _CONTINUATION.search(text) or _TRAILING_NE.search(text):
        return True
    words = len(_WORD.findall(text))
    cjk = len(_CJK_CHAR.findall(text))
    if (words <= TINY_WORDS and cjk == 0) or (cjk and cjk <= TINY_CJK and words <= 1):
        return True
    short = words <= SHORT_WORDS if cjk == 0 else cjk <= SHORT_CJK and words <= SHORT_WORDS
    return short and _PRONOUN.search(text) is not None


def question_of(messages: Sequence[ChatMessage]) -> str | None:
    """The self-contained question of a conversation; None if its last user message has no
    text (or there is none)."""
    users = [m.text.strip() for m in messages if m.role == "user"]
    if not users or not users[-1]:
        return None
    earlier = [text for text in users[:-1] if text]
    turns = [users[-1]]
    while earlier and len(turns) < MAX_TURNS and is_follow_up(turns[0]):
        before = earlier.pop()
        if len(before) + 1 + sum(len(t) + 1 for t in turns) > MAX_QUESTION_CHARS:
            break
        turns.insert(0, before)
    return " ".join(turns)
