"""A typical LangChain prototype: retriever | prompt | ChatOpenAI | parser.

Nothing in it knows about ragserve. Serve it unchanged as a durable, queued, streamed service
(from this folder, so that ``prototype_chain`` is importable)::

    export OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-...
    ragserve serve --app prototype=prototype_chain:chain

    curl -s localhost:8000/v1/apps/prototype/jobs -H 'content-type: application/json' \\
         -d '{"input": "When does the Aurora office open?"}'

``ChatOpenAI`` reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` as usual, so any
OpenAI-compatible server (vLLM, Ollama, the tests' mock LLM) can stand in. The retriever is a
tiny in-memory keyword retriever, so the example runs without an embedding model; swap in any
LangChain retriever (``ragserve.langchain`` provides one over a ragserve collection).
"""

from __future__ import annotations

import re

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough
from langchain_openai import ChatOpenAI

HANDBOOK = [
    Document(
        page_content="The Aurora office opens at 8 am and closes at 6 pm on weekdays.",
        metadata={"source": "office.md"},
    ),
    Document(
        page_content="Employees may work remotely up to two days a week after their manager"
        " agrees.",
        metadata={"source": "remote.md"},
    ),
    Document(
        page_content="Travel expenses are reimbursed within ten working days of an approved claim.",
        metadata={"source": "travel.md"},
    ),
]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


class KeywordRetriever(BaseRetriever):
    """The documents sharing the most words with the question."""

    documents: list[Document]
    k: int = 2

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        words = _words(query)
        ranked = sorted(self.documents, key=lambda d: -len(words & _words(d.page_content)))
        return ranked[: self.k]


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(
        f"[{n}] (source: {doc.metadata['source']})\n{doc.page_content}"
        for n, doc in enumerate(docs, 1)
    )


prompt = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer only from the numbered passages and cite them as [n]."),
        ("human", "{context}\n\nQuestion: {question}"),
    ]
)
llm = ChatOpenAI(model="gpt-4o-mini", temperature=0)
retriever = KeywordRetriever(documents=HANDBOOK)

chain = (
    {"context": retriever | format_docs, "question": RunnablePassthrough()}
    | prompt
    | llm
    | StrOutputParser()
)

if __name__ == "__main__":
    print(chain.invoke("When does the Aurora office open?"))
