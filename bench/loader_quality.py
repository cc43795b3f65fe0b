"""How well HTML main-text extractors drop page chrome and keep the body, on annotated pages.

Each page ``NAME.html`` in the corpus folder has a hand-written ``NAME.json`` next to it::

    {"generator": "Sphinx 5.3", "origin": "...", "licence": "...",
     "boilerplate": ["Previous topic", "Created using Sphinx", ...],   # must NOT survive
     "body": ["The tty module defines functions for ...", ...]}       # MUST survive

For every extractor and page, text is compared with whitespace collapsed (extractors differ in
where they put line breaks, not in what they keep):

* boilerplate survival = boilerplate strings found in the output / boilerplate strings;
* body loss = body sentences missing from the output / body sentences.

Lower is better for both. Extractors whose library is not installed are skipped with a note
(``pip install trafilatura readability-lxml justext`` to run them all)::

    python bench/loader_quality.py tests/data/pages
    python bench/loader_quality.py /tmp/doc-corpus --extractor ragserve --extractor trafilatura
    python bench/loader_quality.py tests/data/pages --verbose   # which strings failed, per page
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragserve.kb.loaders.html import decode_html, load_html

Extractor = Callable[[bytes], str]


def flat(text: str) -> str:
    """Whitespace collapsed to single spaces, the form both sides are compared in."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- extractors


def ragserve_extract(data: bytes) -> str:
    return load_html(data)[0]


def trafilatura_extract(data: bytes, *, recall: bool = False) -> str:
    import trafilatura

    text = trafilatura.extract(
        decode_html(data),
        include_comments=False,
        include_tables=True,
        favor_recall=recall,
        favor_precision=not recall,
        deduplicate=False,
    )
    return text or ""


def readability_extract(data: bytes) -> str:
    from readability import Document
    from selectolax.lexbor import LexborHTMLParser

    summary = Document(decode_html(data)).summary(html_partial=True)
    root = LexborHTMLParser(summary).body
    return root.text(separator="\n") if root is not None else ""


def justext_extract(data: bytes) -> str:
    import justext

    paragraphs = justext.justext(data, justext.get_stoplist("English"))
    return "\n\n".join(p.text for p in paragraphs if not p.is_boilerplate)


EXTRACTORS: dict[str, tuple[Extractor, str]] = {
    # name: (function, module that must be importable)
    "ragserve": (ragserve_extract, "selectolax"),
    "trafilatura": (trafilatura_extract, "trafilatura"),
    "trafilatura-recall": (lambda data: trafilatura_extract(data, recall=True), "trafilatura"),
    "readability": (readability_extract, "readability"),
    "justext": (justext_extract, "justext"),
}


# --------------------------------------------------------------------------- evaluation


@dataclass
class Page:
    name: str
    generator: str
    html: bytes
    boilerplate: list[str]
    body: list[str]


@dataclass
class Score:
    boilerplate_found: int = 0
    boilerplate_total: int = 0
    body_missing: int = 0
    body_total: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Score) -> None:
        self.boilerplate_found += other.boilerplate_found
        self.boilerplate_total += other.boilerplate_total
        self.body_missing += other.body_missing
        self.body_total += other.body_total
        self.seconds += other.seconds
        self.failures += other.failures

    @property
    def survival(self) -> float:
        return self.boilerplate_found / max(self.boilerplate_total, 1)

    @property
    def loss(self) -> float:
        return self.body_missing / max(self.body_total, 1)


def load_corpus(folder: Path) -> list[Page]:
    pages = []
    for annotation in sorted(folder.glob("*.json")):
        html = annotation.with_suffix(".html")
        if not html.exists():
            continue
        meta: dict[str, Any] = json.loads(annotation.read_text(encoding="utf-8"))
        pages.append(
            Page(
                name=annotation.stem,
                generator=meta["generator"],
                html=html.read_bytes(),
                boilerplate=meta["boilerplate"],
                body=meta["body"],
            )
        )
    return pages


def score_page(extract: Extractor, page: Page) -> Score:
    started = time.perf_counter()
    try:
        text = flat(extract(page.html))
    except Exception as exc:  # an extractor crashing on a page counts as losing all of it
        text = ""
        print(f"  {page.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    score = Score(seconds=time.perf_counter() - started)
    score.boilerplate_total = len(page.boilerplate)
    score.body_total = len(page.body)
    for phrase in page.boilerplate:
        if flat(phrase) in text:
            score.boilerplate_found += 1
            score.failures.append(f"{page.name}: boilerplate kept: {phrase!r}")
    for sentence in page.body:
        if flat(sentence) not in text:
            score.body_missing += 1
            score.failures.append(f"{page.name}: body lost: {sentence!r}")
    return score


def available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of NAME.html + NAME.json pages")
    parser.add_argument(
        "--extractor",
        action="append",
        choices=sorted(EXTRACTORS),
        help="evaluate only these (repeatable); default: all installed",
    )
    parser.add_argument("--verbose", action="store_true", help="list every failed string")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    pages = load_corpus(args.folder)
    if not pages:
        parser.error(f"no NAME.html + NAME.json pairs in {args.folder}")
    generators = sorted({page.generator for page in pages})
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, corpus {args.folder}: ", end="")
    print(f"{len(pages)} pages, {len(generators)} generators")
    print(f"{sum(len(p.boilerplate) for p in pages)} boilerplate strings, ", end="")
    print(f"{sum(len(p.body) for p in pages)} body sentences\n")

    results: dict[str, dict[str, Any]] = {}
    header = f"{'extractor':<20} {'boilerplate kept':>17} {'body lost':>12} {'ms/page':>8}"
    print(header)
    print("-" * len(header))
    for name in args.extractor or list(EXTRACTORS):
        extract, module = EXTRACTORS[name]
        if not available(module):
            print(f"{name:<20} (not installed: pip install {module})")
            continue
        total = Score()
        by_generator: dict[str, Score] = {}
        for page in pages:
            score = score_page(extract, page)
            total.add(score)
            by_generator.setdefault(page.generator, Score()).add(score)
        kept = f"{total.boilerplate_found:>4}/{total.boilerplate_total:<4} {total.survival:>6.1%}"
        lost = f"{total.body_missing:>3}/{total.body_total:<3} {total.loss:>5.1%}"
        print(f"{name:<20} {kept} {lost} {1000 * total.seconds / len(pages):>8.1f}")
        if args.verbose:
            for failure in total.failures:
                print(f"    {failure}")
        results[name] = {
            "boilerplate_survival": total.survival,
            "body_loss": total.loss,
            "by_generator": {
                generator: {"boilerplate_survival": s.survival, "body_loss": s.loss}
                for generator, s in by_generator.items()
            },
        }

    print("\nper generator (boilerplate kept / body lost):")
    names = list(results)
    print(f"{'generator':<44}" + "".join(f"{n:>20}" for n in names))
    for generator in generators:
        cells = "".join(
            f"{results[n]['by_generator'][generator]['boilerplate_survival']:>11.0%}"
            f" /{results[n]['by_generator'][generator]['body_loss']:>5.0%} "
            for n in names
        )
        print(f"{generator:<44}{cells}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
