"""Writes ``identifiers.jsonl`` and ``offtopic.jsonl``: synthetic evaluation sets we own.

Identifier set: paragraphs of ordinary business text (error catalogue, parts list, policy
register, invoices, staff directory), each naming one identifier exactly once: an error code
(``E-4471``), a part number (``PX-20931-K``), a policy number (``HR-2023-117``), an invoice
amount, a person's name. Paragraphs of one kind share a template, so what tells them apart is
the identifier and little else: what users ask for and dense vectors handle badly. Each
question names the identifier and asks for that paragraph's fact. Off-topic set: questions
about things none of these paragraphs (nor the SQuAD sample) talk about.

Deterministic (fixed seed): ``python bench/data/make_identifier_set.py`` rewrites the same
files. Written for the project; licence: CC0 (see bench/data/README.md).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
SEED = 20261129
PER_KIND = 80  # at most 100: the families below have two digits  # paragraphs per kind; 5 kinds
QUESTIONS_PER_KIND = 40

COMPONENTS = [
    "pump controller",
    "conveyor drive",
    "label printer",
    "cooling unit",
    "door sensor",
    "scanner head",
    "power supply",
    "hydraulic valve",
    "touch panel",
    "spindle motor",
]
SYMPTOMS = [
    "stops after a few seconds",
    "reports a checksum mismatch",
    "overheats under load",
    "loses its network link",
    "rejects the calibration file",
    "runs below rated speed",
    "shows a blank screen",
    "trips the main breaker",
]
ACTIONS = [
    "replace the fuse F2",
    "reseat the ribbon cable",
    "reload firmware 4.2",
    "clean the air filter",
    "tighten the ground strap",
    "reset the encoder offset",
    "swap the relay board",
    "recalibrate with the blue gauge",
]
PARTS = [
    "bearing",
    "gasket",
    "drive belt",
    "filter cartridge",
    "sensor bracket",
    "fan module",
    "seal kit",
    "coupling",
]
MACHINES = ["packaging line", "bottling station", "press", "sorter", "palletiser", "mixer"]
CITIES = ["Leeds", "Porto", "Lyon", "Gdansk", "Tampere", "Bilbao", "Graz", "Utrecht"]
TOPICS = [
    ("remote work", "employees may work from home up to {n} days a week"),
    ("travel", "hotel costs are refunded up to {n}0 euros a night"),
    ("overtime", "overtime is paid at {n}5 percent of the hourly rate"),
    ("training", "each employee has {n} paid training days a year"),
    ("equipment", "a laptop is replaced every {n} years"),
    ("parental leave", "parents receive {n} extra weeks of paid leave"),
]
FIRST = [
    "Anna",
    "Marek",
    "Sofia",
    "Jonas",
    "Ines",
    "Pavel",
    "Lena",
    "Tomas",
    "Clara",
    "Emil",
    "Nora",
    "Hugo",
    "Mira",
    "Oskar",
    "Vera",
    "Felix",
]
LAST = [
    "Kowalczyk",
    "Lindqvist",
    "Moreau",
    "Brennan",
    "Varga",
    "Okafor",
    "Sato",
    "Fischer",
    "Rossi",
    "Novak",
    "Haddad",
    "Jensen",
    "Costa",
    "Weber",
    "Ivanova",
    "Duarte",
]
TEAMS = ["payroll", "procurement", "IT support", "logistics", "quality", "facilities"]


def make(rng: random.Random) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    corpus: list[dict[str, str]] = []
    questions: list[dict[str, str]] = []
    used: set[str] = set()

    def unique(make_id: Callable[[], str]) -> str:
        while True:
            value = make_id()
            if value not in used:
                used.add(value)
                return value

    # Identifiers come in families, as in real catalogues (E-4401, E-4402 ... E-4480): close
    # neighbours differ in a digit or two, which is what embeddings blur.
    def family(fmt: str) -> Callable[[], str]:
        numbers = iter(rng.sample(range(PER_KIND), PER_KIND))
        return lambda: unique(lambda: fmt.format(next(numbers)))

    kinds: dict[str, Callable[[], str]] = {
        "error": family("E-44{:02d}"),
        "part": family("PX-204{:02d}-K"),
        "policy": family("HR-2023-1{:02d}"),
        "invoice": family("INV-2026-000{:02d}"),
        "person": lambda: unique(lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}"),
    }
    for kind, new_id in kinds.items():
        for n in range(PER_KIND):
            ident = new_id()
            pid = f"{kind}-{n:03d}"
            if kind == "error":
                comp, sym, act = rng.choice(COMPONENTS), rng.choice(SYMPTOMS), rng.choice(ACTIONS)
                text = (
                    f"Error {ident} is raised when the {comp} {sym}. Operators should first "
                    f"check the log of the last shift. The documented fix is to {act}; if the "
                    "error comes back within a day, open a ticket with maintenance."
                )
                q, a = f"What is the fix for error {ident}?", act
            elif kind == "part":
                part, mach, city = rng.choice(PARTS), rng.choice(MACHINES), rng.choice(CITIES)
                text = (
                    f"Part number {ident} is the {part} fitted to the {mach}. It is kept in "
                    f"stock at the {city} warehouse and is reordered when fewer than ten are "
                    "left. Use only original parts; copies void the warranty."
                )
                q, a = f"Which warehouse stocks part {ident}?", city
            elif kind == "policy":
                topic, rule = rng.choice(TOPICS)
                rule = rule.format(n=rng.randint(2, 9))
                text = (
                    f"Policy {ident} governs {topic}. Under it, {rule}. Managers approve "
                    "requests in the HR portal, and exceptions need the written consent of "
                    "the department head. The policy is reviewed every year."
                )
                q, a = f"What does policy {ident} say?", rule
            elif kind == "invoice":
                amount = f"{rng.randint(1, 98)},{rng.randint(100, 999)}.{rng.randint(10, 99)} EUR"
                team = rng.choice(TEAMS)
                text = (
                    f"Invoice {ident} for {amount} was booked by the {team} team. It covers "
                    "services delivered last quarter and is payable within thirty days. "
                    "Questions about it go to the accounts payable mailbox."
                )
                q, a = f"What is the amount of invoice {ident}?", amount
            else:
                team, city = rng.choice(TEAMS), rng.choice(CITIES)
                text = (
                    f"{ident} works in the {team} team at the {city} office. New colleagues "
                    "can contact this person for questions about their first weeks, and "
                    "about the tools the team uses every day."
                )
                q, a = f"Which team does {ident} work in?", team
            corpus.append({"kind": "passage", "id": pid, "title": kind, "text": text})
            if n < QUESTIONS_PER_KIND:
                questions.append(
                    {"kind": "query", "id": f"q-{pid}", "doc_id": pid, "question": q, "answer": a}
                )
    return corpus, questions


OFF_TOPIC = [
    "How many moons does Neptune have?",
    "Who painted the ceiling of the Sistine Chapel?",
    "What is the boiling point of ethanol?",
    "How do I make sourdough bread?",
    "Which country won the 1998 football World Cup?",
    "What is the capital of Mongolia?",
    "How long do elephants live?",
    "What language is spoken in Suriname?",
    "How deep is the Mariana Trench?",
    "Who wrote the opera Carmen?",
    "What is the speed of sound in water?",
    "How do bees make honey?",
    "When was the printing press invented?",
    "What is the tallest tree species?",
    "How many strings does a cello have?",
    "What causes the northern lights?",
    "Which planet has the longest day?",
    "How is cheese made?",
    "What is the population of Iceland?",
    "Who discovered penicillin?",
    "火星上有水吗？",
    "熊猫一天吃多少竹子？",
    "如何做红烧肉？",
    "长城有多长？",
    "谁发明了电话？",
]


def main() -> None:
    corpus, questions = make(random.Random(SEED))
    with (HERE / "identifiers.jsonl").open("w", encoding="utf-8") as f:
        for row in corpus + questions:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (HERE / "offtopic.jsonl").open("w", encoding="utf-8") as f:
        for n, question in enumerate(OFF_TOPIC):
            f.write(json.dumps({"id": f"off-{n:02d}", "question": question}, ensure_ascii=False))
            f.write("\n")
    print(f"{len(corpus)} passages, {len(questions)} questions, {len(OFF_TOPIC)} off-topic")


if __name__ == "__main__":
    main()
