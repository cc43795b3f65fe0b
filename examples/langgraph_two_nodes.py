"""A two-node LangGraph graph: ``draft`` writes an answer, ``review`` checks and signs it.

Serve the compiled graph as an app (from this folder)::

    ragserve serve --app review=langgraph_two_nodes:graph
    curl -s localhost:8000/v1/apps/review/jobs -H 'content-type: application/json' \\
         -d '{"input": {"question": "What is 6 x 7?"}}'

Each node's update is streamed as a ``chunk`` event (``{"draft": {...}}`` then
``{"review": {...}}``); the job's result is the final state. The input is checked against the
graph's input schema (the ``State`` below): ``{"input": {}}`` gets a 422 naming ``question``.
"""

from __future__ import annotations

from typing import NotRequired

from langgraph.graph import END, START, StateGraph

# typing_extensions' TypedDict: pydantic (which builds the input schema) needs it before 3.12.
from typing_extensions import TypedDict


class State(TypedDict):
    question: str
    draft: NotRequired[str]
    approved: NotRequired[bool]
    answer: NotRequired[str]


def draft(state: State) -> State:
    question = state["question"].strip()
    return {"draft": f"Draft answer to: {question}"}


async def review(state: State) -> State:
    text = state["draft"]
    approved = len(text) < 500
    return {"approved": approved, "answer": text.replace("Draft answer", "Reviewed answer")}


builder = StateGraph(State)
builder.add_node("draft", draft)
builder.add_node("review", review)
builder.add_edge(START, "draft")
builder.add_edge("draft", "review")
builder.add_edge("review", END)
graph = builder.compile()
