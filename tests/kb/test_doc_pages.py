"""HTML loader on real pages of documentation tools: chrome removed, body kept.

Every ``NAME.html`` under ``tests/data/pages`` (Texinfo, Sphinx, MkDocs, Javadoc, Doxygen,
DocBook, gtk-doc, AsciiDoc, Node.js pages installed by Debian packages; origins and licences
in the README there) has a hand-written ``NAME.json`` listing the boilerplate strings that must
not survive and body sentences that must. ``bench/loader_quality.py`` computes the same figures
for other extractors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser

from ragserve.kb.loaders import load_document
from ragserve.kb.loaders.html import decode_html, render_html

PAGES = Path(__file__).resolve().parents[1] / "data" / "pages"
ANNOTATIONS = sorted(PAGES.rglob("*.json"))


def flat(text: str) -> str:
    """Whitespace collapsed: annotations are compared regardless of line breaks."""
    return " ".join(text.split())


def annotation(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def everything(html: bytes) -> str:
    """The whole page rendered as the loader renders content, chrome included."""
    tree = LexborHTMLParser(decode_html(html))
    for node in tree.css("script, style"):
        node.decompose()
    return flat(render_html(tree.body))


def test_corpus_covers_the_documentation_tools():
    generators = {annotation(path)["generator"].split()[0] for path in ANNOTATIONS}
    assert {"Texinfo", "Sphinx", "MkDocs", "Javadoc", "Doxygen", "DocBook"} <= generators
    assert len(ANNOTATIONS) >= 30
    for path in ANNOTATIONS:
        assert path.with_suffix(".html").exists(), path
        assert {"generator", "origin", "licence", "boilerplate", "body"} <= set(annotation(path))


@pytest.mark.parametrize("path", ANNOTATIONS, ids=lambda p: str(p.relative_to(PAGES)))
def test_annotations_are_on_the_page(path: Path):
    """Each string is really on the page, so its absence from the output means something."""
    text = everything(path.with_suffix(".html").read_bytes())
    expected = annotation(path)
    for phrase in expected["boilerplate"] + expected["body"]:
        assert flat(phrase) in text, phrase


@pytest.mark.parametrize("path", ANNOTATIONS, ids=lambda p: str(p.relative_to(PAGES)))
def test_chrome_removed_and_body_kept(path: Path):
    html = path.with_suffix(".html")
    text = flat(load_document(html.read_bytes(), html.name).text)
    expected = annotation(path)
    kept = [phrase for phrase in expected["boilerplate"] if flat(phrase) in text]
    lost = [sentence for sentence in expected["body"] if flat(sentence) not in text]
    assert not kept, f"boilerplate kept: {kept}"
    assert not lost, f"body lost: {lost}"
