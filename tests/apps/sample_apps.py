"""Runnables the apps tests serve (``--app NAME=sample_apps:ATTRIBUTE``); each shows one thing.

Loaded by the service under test, never by the tests themselves: the service's
``PYTHONPATH`` holds this folder.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig, RunnableGenerator, RunnableLambda
from pydantic import BaseModel, Field

from ragserve.errors import PermanentError


class Greeting(BaseModel):
    name: str = Field(min_length=1)
    times: int = Field(default=1, ge=1, le=5)


@dataclasses.dataclass
class Stamp:
    day: datetime.date
    by: str


async def _greet(value: dict[str, Any]) -> dict[str, Any]:
    text = " ".join([f"Hello {value['name']}!"] * int(value.get("times", 1)))
    return {
        "text": text,
        "message": AIMessage(content=text),
        "document": Document(page_content=text, metadata={"lang": "en"}),
        "model": Greeting(name=value["name"]),
        "stamp": Stamp(datetime.date(2026, 1, 2), "greeter"),
        "ratio": float("nan"),
        "pair": (1, 2),
    }


greet = RunnableLambda(_greet, name="greet").with_types(input_type=Greeting)
"""A simple async chain with a pydantic input schema and an output of every documented kind."""


async def _count(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, int]]:
    async for value in inputs:
        for n in range(int(value["count"])):
            yield {"n": n}


counter = RunnableGenerator(_count, name="counter")
"""A generator: one chunk per number."""


def _flaky(value: str, config: RunnableConfig) -> str:
    attempt = int((config.get("metadata") or {})["ragserve_attempt"])
    if attempt < 2:
        raise ConnectionError(f"model endpoint hiccup at attempt {attempt}")
    return f"{value} at attempt {attempt}"


flaky = RunnableLambda(_flaky, name="flaky")
"""Sync; fails its first attempt with a transient error."""


class InvoiceRejected(PermanentError):
    pass


def _reject(value: Any) -> str:
    raise InvoiceRejected(f"invoice {value!r} is not ours")


reject = RunnableLambda(_reject, name="reject")
"""Fails with an error the app marks permanent."""


def _lookup(value: dict[str, Any]) -> Any:
    return value["missing"]


lookup = RunnableLambda(_lookup, name="lookup")
"""Fails with a KeyError: a programming error, permanent."""


class OddSchemas(RunnableLambda[Any, Any]):
    """A Runnable whose schemas cannot be built."""

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        raise TypeError("no schema for you")

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        raise TypeError("no schema for you")


odd = OddSchemas(lambda value: {"got": value}, name="odd")
