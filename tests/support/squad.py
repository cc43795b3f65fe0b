"""The vendored SQuAD v1.1 dev sample (``tests/data/squad``; licence and origin in its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.processes import ROOT

SQUAD_SAMPLE = ROOT / "tests" / "data" / "squad"
"""Folder with ``corpus.jsonl`` (paragraphs) and ``queries.jsonl`` (questions)."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]
