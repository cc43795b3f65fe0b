"""What an app's output (and each streamed chunk) becomes in JSON: the one serializer.

The shapes (docs/APPS.md, "Output"):

- JSON types stay as they are; tuples and sets become lists; dict keys become strings;
- LangChain messages: ``message.model_dump(mode="json")``, i.e. ``{"type", "content", ...}``
  with the message's other fields (``id``, ``tool_calls``, ``response_metadata`` ...);
- LangChain documents: ``{"page_content", "metadata"}`` (``id`` too when it has one);
- other pydantic models: ``model_dump(mode="json")``; dataclasses: ``dataclasses.asdict``;
- dates and times: ISO 8601 strings; non-finite floats: ``"nan"``, ``"inf"``, ``"-inf"``;
- anything else: ``str(value)``.

Strings are made storable (PostgreSQL's jsonb holds no NUL and no lone surrogate): NUL becomes
U+FFFD, and so does a lone surrogate.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

_MAX_DEPTH = 100  # a cycle (or an absurdly deep value) ends as a string, not a RecursionError


def to_json(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON-ready data (see the module docstring for the shapes)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= _MAX_DEPTH:
        return _storable_text(str(value))
    depth = _depth + 1
    if isinstance(value, Mapping):
        return {_storable_text(str(k)): to_json(v, depth) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item, depth) for item in value]
    if isinstance(value, Document):
        shape: dict[str, Any] = {"page_content": value.page_content, "metadata": value.metadata}
        if value.id is not None:
            shape["id"] = value.id
        return to_json(shape, depth)
    if isinstance(value, BaseMessage | BaseModel):
        return to_json(_dump(value), depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value), depth)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return _storable_text(str(value))


def _dump(model: BaseModel) -> Any:
    try:
        return model.model_dump(mode="json")
    except Exception:  # a field pydantic cannot render in JSON mode: take it field by field
        return model.model_dump()


def _storable_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text
