"""The clients people already use, unchanged, against ragserve: the official ``openai`` SDK
and LangChain's ``ChatOpenAI``."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai import ChatOpenAI
from served import Served

import openai

WIFI = "The guest Wi-Fi network is called Lumen-Guest. [1]"


@pytest.fixture(scope="module")
def sdk(served: Served) -> openai.OpenAI:
    # No key is needed with RAGSERVE_AUTH=off; the SDK insists on one anyway.
    return openai.OpenAI(base_url=served.openai_base, api_key="unused", max_retries=0)


def test_sdk_lists_models(sdk: openai.OpenAI) -> None:
    assert sorted(model.id for model in sdk.models.list()) == ["faq", "handbook"]
    assert sdk.models.retrieve("handbook").owned_by == "ragserve"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nope")


def test_sdk_completion(sdk: openai.OpenAI, served: Served) -> None:
    answer = sdk.chat.completions.create(
        model="handbook",
        messages=[{"role": "user", "content": "What is the guest wifi called?"}],
    )
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == f"{WIFI}\n\nSources:\n[1] wifi.md"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.total_tokens > 0
    extension = answer.model_extra["ragserve"] if answer.model_extra else {}
    assert answer.id == f"chatcmpl-{extension['job_id']}"
    assert served.wait_job(extension["job_id"])["status"] == "succeeded"


def test_sdk_stream(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="handbook",
        messages=[{"role": "user", "content": "Name of the guest Wi-Fi network?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"{WIFI}\n\nSources:\n[1] wifi.md"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_sdk_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as several:
        sdk.chat.completions.create(
            model="handbook", messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert several.value.param == "n" and several.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):  # streamed requests fail before the stream
        sdk.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "hi"}], stream=True
        )


def test_chat_openai_invoke_and_stream(served: Served) -> None:
    chat = ChatOpenAI(
        base_url=served.openai_base, api_key="unused", model="handbook", max_retries=0
    )
    reply = chat.invoke("Where is parking for employees?")
    assert isinstance(reply, AIMessage)
    assert str(reply.content).startswith("Parking is free for employees on level B2. [1]")
    pieces = [str(chunk.content) for chunk in chat.stream("Where is parking for employees?")]
    assert "".join(pieces) == reply.content
    # A conversation: the follow-up is asked together with the question before it.
    history = [
        HumanMessage("What is the guest Wi-Fi network called?"),
        AIMessage(WIFI),
        HumanMessage("And what is its password?"),
    ]
    follow_up = chat.invoke(history)
    assert str(follow_up.content).startswith("The guest Wi-Fi network is called Lumen-Guest.")
    job = served.http.get("/v1/jobs", params={"limit": 1}).json()["jobs"][0]
    assert job["query"] == "What is the guest Wi-Fi network called? And what is its password?"
