"""The app the limits tests serve (``--app chat=limits_apps:chat``): a chat model that reports
its usage (``stream_usage``), so that an app job's tokens reach the tenant's usage.

Loaded by the service under test, never by the tests themselves: the service's
``PYTHONPATH`` holds this folder. ``ChatOpenAI`` reads ``OPENAI_BASE_URL`` (the mock LLM).
"""

from __future__ import annotations

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

chat = (
    ChatPromptTemplate.from_messages([("human", "{question}")])
    | ChatOpenAI(model="mock", temperature=0, stream_usage=True)
    | StrOutputParser()
)
