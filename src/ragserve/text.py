"""Character classes of the text we handle, shared by the prompt, the answerer and the chunker.

A leaf module: it imports nothing from ragserve.
"""

from __future__ import annotations

import re

CJK_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""The body of a regex character class: CJK ideographs (extension A, unified, compatibility).

For use inside larger classes, e.g. ``rf"[^\\W{CJK_IDEOGRAPHS}]"``.
"""

CJK_IDEOGRAPH = re.compile(f"[{CJK_IDEOGRAPHS}]")
"""One CJK ideograph."""


def has_cjk_ideograph(text: str) -> bool:
    """Whether ``text`` contains any CJK ideograph (a Chinese question, for our purposes)."""
    return CJK_IDEOGRAPH.search(text) is not None


def estimate_tokens(text: str) -> int:
    """A cheap token count for when a provider reports none (and for local embeddings).

    One token per CJK ideograph (BPE vocabularies of current models mostly spend one or more
    on each), and one per four other characters (OpenAI's rule of thumb for English), at
    least one for any non-empty text. Good to ±30 % for budgets; not a tokenizer.
    """
    if not text:
        return 0
    ideographs = len(CJK_IDEOGRAPH.findall(text))
    return max(1, ideographs + -(-(len(text) - ideographs) // 4))
