"""A tiny corpus in the published SQuAD v1.1 format, written for the benchmark smoke tests.

Two invented articles of three paragraphs each, two questions per paragraph; every answer is
quoted from its paragraph. Small enough for a benchmark to finish in seconds, distinct enough
that a working retriever finds each question's paragraph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARTICLES: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
    "Harbor_Lighthouse": [
        (
            "The Harbor Lighthouse was built in 1871 on a granite ledge at the mouth of the bay."
            " Its tower is 34 metres tall and was painted with red and white bands so that"
            " sailors could recognise it by day.",
            [
                ("When was the Harbor Lighthouse built?", "1871"),
                ("How tall is the tower of the Harbor Lighthouse?", "34 metres"),
            ],
        ),
        (
            "Until 1952 the light was an oil lamp tended by a keeper who lived in a cottage at"
            " the foot of the tower. The keeper wound the clockwork that turned the lens every"
            " four hours through the night.",
            [
                ("What kind of lamp did the lighthouse use until 1952?", "an oil lamp"),
                ("How often did the keeper wind the clockwork?", "every four hours"),
            ],
        ),
        (
            "Today the lighthouse is automated and the keeper's cottage houses a small museum of"
            " shipwrecks. Visitors can climb the 152 steps to the gallery on summer weekends.",
            [
                ("What is in the keeper's cottage today?", "a small museum of shipwrecks"),
                ("How many steps lead to the gallery?", "152"),
            ],
        ),
    ],
    "Alpine_Cheese": [
        (
            "Mountain cheese is made in summer huts above the tree line, where cows graze on"
            " alpine meadows. The milk is heated in a copper kettle over a wood fire before the"
            " rennet is added.",
            [
                ("Where is mountain cheese made?", "in summer huts above the tree line"),
                ("In what is the milk heated?", "a copper kettle"),
            ],
        ),
        (
            "A wheel of mountain cheese weighs about 40 kilograms and needs at least eight months"
            " of ripening in a cool cellar. During that time it is turned and brushed with brine"
            " twice a week.",
            [
                ("How much does a wheel of mountain cheese weigh?", "about 40 kilograms"),
                ("How long must the cheese ripen?", "at least eight months"),
            ],
        ),
        (
            "In autumn the herders drive the cows back down to the valley in a festive procession,"
            " the animals decorated with flowers and large bells. The cheese follows later on"
            " mule carts.",
            [
                ("How are the cows decorated in the autumn procession?", "with flowers"),
                ("How is the cheese brought down to the valley?", "on mule carts"),
            ],
        ),
    ],
}


def squad_document() -> dict[str, Any]:
    """The corpus as ``dev-v1.1.json`` lays it out, with answer offsets."""
    data = []
    for title, paragraphs in ARTICLES.items():
        entries = []
        for p, (context, qas) in enumerate(paragraphs):
            entries.append(
                {
                    "context": context,
                    "qas": [
                        {
                            "id": f"{title}-{p}-{q}",
                            "question": question,
                            "answers": [{"text": answer, "answer_start": context.index(answer)}],
                        }
                        for q, (question, answer) in enumerate(qas)
                    ],
                }
            )
        data.append({"title": title, "paragraphs": entries})
    return {"version": "1.1", "data": data}


def write_tiny_squad(folder: Path) -> Path:
    path = folder / "tiny-squad.json"
    path.write_text(json.dumps(squad_document(), ensure_ascii=False), encoding="utf-8")
    return path


PARAGRAPHS = sum(len(p) for p in ARTICLES.values())
QUESTIONS = sum(len(qas) for paragraphs in ARTICLES.values() for _, qas in paragraphs)
