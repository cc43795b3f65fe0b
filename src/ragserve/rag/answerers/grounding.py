"""Is the sentence the answerer would quote about the question? A model's second opinion.

Lexical signals (overlap with the passages, words the collection lacks) miss the off-topic
questions that reuse the collection's words ("What is the capital of Mongolia?" of documents
that mention Mongolia, "去香港出差每晚住宿上限是多少？" of a handbook with a hotel table). The
collection's own embedding model reads them better: the question's cosine with the sentences
the answerer would pick from (its best few by the lexical score) is lower when they merely
share words. That cosine's scale belongs
to the model (e5's Chinese cosines run higher than its English ones; another model's sit
elsewhere), so a threshold is only used for a model it was calibrated for
(:data:`CALIBRATIONS`, keyed by the embedder's name without its runtime version); for any
other embedder the answerer keeps the lexical rules alone. Calibrated with
``bench/zh_eval.py`` on the even half of the Chinese handbook and English sets (and their
off-topic sets), checked on the odd half: docs/LOCATIONS.md, "extractive:v4".

Cost: one question embedding and a few sentence embeddings per answer, for questions that pass
the lexical rules (measured in docs/LOCATIONS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ragserve.kb.embeddings import Embedder
from ragserve.rag.prompts import is_chinese


@dataclass(frozen=True)
class Calibration:
    """When the quoted sentence is too far from the question, for one embedding model."""

    min_similarity_en: float
    """Say "not in the documents" when the highest cosine of an English (or other
    non-Chinese) question with its candidate sentences is below this ..."""
    min_similarity_zh: float
    """... or that of a Chinese question below this."""
    sentences: int = 5
    """Candidate sentences compared: the answerer's best ones by the lexical score."""


CALIBRATIONS: Mapping[str, Calibration] = {
    "local:multilingual-e5-small-q4": Calibration(min_similarity_en=0.80, min_similarity_zh=0.884),
}
"""Calibrated embedding models, by ``Embedder.name`` up to its ``@`` (the runtime version)."""


def calibration_for(embedder_name: str) -> Calibration | None:
    return CALIBRATIONS.get(embedder_name.split("@", 1)[0])


class SentenceGrounding:
    """The question's cosine with a candidate sentence, by the collection's embedding model,
    and whether it is too low for that model's calibration."""

    def __init__(self, embedder: Embedder, calibration: Calibration) -> None:
        self.embedder = embedder
        self.calibration = calibration

    @classmethod
    def for_embedder(cls, embedder: Embedder) -> SentenceGrounding | None:
        """None for an embedder without a calibration (the answerer then ignores the model)."""
        calibration = calibration_for(embedder.name)
        return None if calibration is None else cls(embedder, calibration)

    @property
    def sentences(self) -> int:
        return self.calibration.sentences

    def too_far(self, question: str, similarity: float) -> bool:
        """Whether ``similarity`` (:meth:`similarity`) says the sentences are not about it."""
        c = self.calibration
        return similarity < (c.min_similarity_zh if is_chinese(question) else c.min_similarity_en)

    async def similarity(self, question: str, sentences: Sequence[str]) -> float:
        """The highest cosine of the question (embedded as a query) with the sentences (as
        passages); 0 without sentences."""
        if not sentences:
            return 0.0
        query, passages = await asyncio.gather(
            self.embedder.embed_query(question), self.embedder.embed_documents(list(sentences))
        )
        q = np.asarray(query, dtype=np.float64)
        s = np.asarray(passages, dtype=np.float64)
        norms = np.linalg.norm(s, axis=1) * np.linalg.norm(q)
        return float(np.max((s @ q) / np.where(norms > 0, norms, 1.0)))
