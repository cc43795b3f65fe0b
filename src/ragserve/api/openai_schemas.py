"""Bodies of the OpenAI-compatible front door (``/v1/models``, ``/v1/chat/completions``).

The field names and shapes are OpenAI's (the Chat Completions API), so that the official
``openai`` SDK and LangChain's ``ChatOpenAI`` read them as they are. What ragserve adds lives
under one extra key, ``ragserve``. docs/OPENAI.md describes every field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragserve.api.schemas import Source
from ragserve.jobs.models import storable

# -- errors -------------------------------------------------------------------------------


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, server_error or timeout_error.")
    param: str | None = Field(default=None, description="The request field at fault, if any.")
    code: str | None = Field(
        default=None, description="e.g. model_not_found, invalid_value, job_timeout, job_failed."
    )


class OpenAIErrorBody(BaseModel):
    """Every error answer of the OpenAI routes (OpenAI's shape, not ragserve's)."""

    error: OpenAIErrorDetail


# -- models -------------------------------------------------------------------------------


class ModelCard(BaseModel):
    """One collection, seen as a model."""

    id: str = Field(description="The collection's name.")
    object: Literal["model"] = "model"
    created: int = Field(description="When the collection was created (Unix seconds).")
    owned_by: str = "ragserve"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- the request --------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a message's content; only ``text`` parts carry text ragserve reads."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The message's text: a string content, or its text parts joined by newlines."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if part.type == "text" and part.text)


class StreamOptions(BaseModel):
    include_usage: bool = Field(
        default=False, description="Send a usage-only chunk (no choices) before [DONE]."
    )


class RagserveOptions(BaseModel):
    """The request's ``ragserve`` object (``extra_body={"ragserve": {...}}`` in the SDK)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(default=4, ge=1, le=100, description="Passages to retrieve.")
    document_scope: list[str] | None = Field(
        default=None, max_length=1000, description="Only these document ids."
    )
    filters: dict[str, Any] | None = Field(default=None, description="Metadata equality filters.")
    sources_footer: bool = Field(
        default=True,
        description="Append 'Sources:' with the passages cited as [n] to the message content.",
    )
    wait_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="Non-streamed only: wait at most this long (capped by the server's limit).",
    )

    _storable = field_validator("document_scope", "filters")(storable)


IGNORED = "Accepted for compatibility and ignored (docs/OPENAI.md)."


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Fields OpenAI defines that are not listed here are
    accepted and ignored as well."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="A collection's name (see GET /v1/models).")
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=1000,
        description="The last user message is the question; earlier ones may complete it.",
    )
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, description="Only 1 is supported.")
    temperature: float | None = Field(default=None, description=IGNORED)
    top_p: float | None = Field(default=None, description=IGNORED)
    max_tokens: int | None = Field(default=None, description=IGNORED)
    max_completion_tokens: int | None = Field(default=None, description=IGNORED)
    stop: str | list[str] | None = Field(default=None, description=IGNORED)
    presence_penalty: float | None = Field(default=None, description=IGNORED)
    frequency_penalty: float | None = Field(default=None, description=IGNORED)
    seed: int | None = Field(default=None, description=IGNORED)
    user: str | None = Field(default=None, description=IGNORED)
    ragserve: RagserveOptions | None = Field(
        default=None, description="ragserve's own options (an extension of the OpenAI request)."
    )

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported: ragserve gives one answer per question")
        return value


# -- the answer ---------------------------------------------------------------------------


class Usage(BaseModel):
    """Token counts, estimated (docs/OPENAI.md): answerers do not report what they used."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop"] = "stop"


class RagserveExtension(BaseModel):
    """What ragserve adds beside the OpenAI fields."""

    job_id: str = Field(description="The answer's job: GET /v1/jobs/{job_id}.")
    sources: list[Source] = Field(description="The passages the answer's [n] refer to, in order.")
    cached: bool = Field(description="The answer came from the answer cache.")
    question: str = Field(description="The question as asked of the documents (see history).")


class ChatCompletion(BaseModel):
    id: str = Field(description="chatcmpl-<job id>.")
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = Field(default=None, description="The version that answered.")
    choices: list[Choice]
    usage: Usage
    ragserve: RagserveExtension
