"""The apps the console tests serve (``RAGSERVE_APPS``), loaded by the service under test only
(its ``PYTHONPATH`` holds this folder): one streaming chunks slowly, one streaming a chat
model's tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableGenerator
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field


class Spelling(BaseModel):
    word: str = Field(min_length=1, max_length=40)
    pause_s: float = Field(default=0.2, ge=0, le=2)


async def _spell(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async for value in inputs:
        word = str(value["word"])
        for n in range(1, len(word) + 1):
            await asyncio.sleep(float(value.get("pause_s", 0.2)))
            yield {"so_far": word[:n], "left": len(word) - n}


spell = RunnableGenerator(_spell, name="spell").with_types(input_type=Spelling)
"""An object input; one chunk per letter, slowly; the output is the last chunk (an object)."""

# The mock LLM answers with the first sentence of passage [1], word by word.
_prompt = ChatPromptTemplate.from_messages([("human", "[1] (source: note.md)\n{text}")])
echo = (_prompt | ChatOpenAI(model="mock", temperature=0) | StrOutputParser()).with_types(
    input_type=str
)
"""A text input; the chat model's tokens stream, and the output is text."""
