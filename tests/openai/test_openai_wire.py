"""The OpenAI shapes' pure parts: the sources footer and the token estimate."""

from __future__ import annotations

from ragserve.api.openai_wire import cited_sources_footer, estimate_tokens
from ragserve.api.schemas import Source


def source(name: str, page: int | None = None, section: list[str] | None = None) -> Source:
    return Source.model_validate(
        {
            "document_id": "d",
            "source": name,
            "chunk_id": "c",
            "score": 0.5,
            "text": "t",
            "metadata": {},
            "location": {"page": page, "section": section},
        }
    )


def test_footer_lists_the_cited_passages_with_their_place() -> None:
    sources = [source("a.md"), source("b.pdf", 3, ["Leave", "Annual"]), source("c.md")]
    footer = cited_sources_footer("Yes [2]. Also [2][1], not [7].", sources)
    assert footer == "\n\nSources:\n[1] a.md\n[2] b.pdf p. 3 · Leave › Annual"
    assert cited_sources_footer("The documents do not contain the answer.", sources) == ""
    assert cited_sources_footer("See [1].", []) == ""


def test_token_estimate() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10  # ~4 characters of Latin text per token
    assert estimate_tokens("年假有几天") == 5  # one per Chinese character
    assert estimate_tokens("年假 days") == 2 + 2
