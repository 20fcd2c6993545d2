"""Job input: the two JSONL forms of the contract, read into one normalised :class:`InferenceJob`.

Form 1, an OpenAI Batch API request line (what ``vllm run-batch`` reads)::

    {"custom_id": "doc-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "auto", "messages": [...], "max_tokens": 512}}

Form 2, the short form: ``{"custom_id": "doc-1", "prompt": "...", "max_tokens": 512}``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

#: The contract's model names, plus "auto" (let the router decide).
MODEL_NAMES = ("llama-3-70b", "mistral-7b", "gpt-4-turbo", "claude-3-opus")
#: Generous upper bound on a completion; larger asks are mistakes, not jobs.
MAX_TOKENS_LIMIT = 200_000

MaxTokens = Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT, strict=True)]
Priority = Annotated[int, Field(ge=0, le=9, strict=True)]
Tenant = Annotated[str, Field(min_length=1, max_length=200)]
CustomId = Annotated[str, Field(min_length=1, max_length=512, strict=True)]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]


def _check_model(v: str | None) -> str:
    if v is None or v == "auto":
        return "auto"
    if v not in MODEL_NAMES:
        raise ValueError(f"unknown model {v!r}; use 'auto' or one of {', '.join(MODEL_NAMES)}")
    return v


class ChatMessage(BaseModel):
    """One chat message in the OpenAI format."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]  # who speaks
    content: str | list[dict[str, Any]]  # text, or OpenAI content parts ({"type": "text", "text": ...})

    @field_validator("content")
    @classmethod
    def _not_empty(cls, v: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(v, str) and (not v or v.isspace()):  # isspace: no copy of a long prompt
            raise ValueError("content is empty")
        if isinstance(v, list) and not v:
            raise ValueError("content is an empty list")
        return v


class ChatBody(BaseModel):
    """The ``body`` of an OpenAI Batch request line (a chat.completions request)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = "auto"  # "auto" = router decides; else one of MODEL_NAMES
    messages: list[ChatMessage] = Field(min_length=1)  # the conversation, at least one message
    max_tokens: MaxTokens | None = None  # completion limit (legacy name)
    max_completion_tokens: MaxTokens | None = None  # completion limit (current name); wins over max_tokens
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: str | list[str] | None = None

    _known_model = field_validator("model")(lambda v: _check_model(v))


class InferenceJob(BaseModel):
    """One job, normalised from either input form. This is what the producer routes and enqueues."""

    model_config = ConfigDict(extra="forbid")

    custom_id: CustomId  # the caller's key; unique within a batch
    messages: list[ChatMessage] = Field(min_length=1)  # the conversation (short form: one user message)
    max_tokens: MaxTokens | None = None  # completion limit; None = the router's estimate
    model: str = "auto"  # requested model, or "auto"
    temperature: Temperature | None = None  # sampling temperature; None = the backend's default
    top_p: TopP | None = None  # nucleus sampling; None = the backend's default
    stop: list[str] | None = None  # stop sequences
    metadata: dict[str, Any] | None = None  # stored with the result, returned untouched
    priority: Priority = 0  # 0-9, higher runs first
    tenant: Tenant | None = None  # for budgets and reports
    split: StrictBool = True  # False: refuse a prompt longer than the model's context instead of chunking

    _known_model = field_validator("model")(lambda v: _check_model(v))

    # Computed once per job (the bulk submit path reads both several times): a job is not changed after parsing.
    @cached_property
    def text(self) -> str:
        """All message text, joined: what the classifier scans."""
        from switchyard.tokens import message_text

        return "\n".join(message_text(m.content) for m in self.messages)

    @cached_property
    def message_dicts(self) -> list[dict[str, Any]]:
        """The messages as plain dicts (shared: do not modify)."""
        return [_as_dict(m) for m in self.messages]

    def messages_as_dicts(self) -> list[dict[str, Any]]:
        return self.message_dicts


def _as_dict(message: ChatMessage) -> dict[str, Any]:
    """``message.model_dump(exclude_none=True)``; built by hand for the common message (text content, no extra
    fields), where pydantic's serializer costs several microseconds a job on the bulk submit path."""
    if not message.__pydantic_extra__ and isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    return message.model_dump(exclude_none=True)


class _ShortForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: CustomId
    prompt: str = Field(min_length=1, strict=True)  # the user's prompt
    system: str | None = None  # optional system prompt
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    model: str | None = "auto"
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: str | list[str] | None = None
    metadata: dict[str, Any] | None = None
    priority: Priority = 0
    tenant: Tenant | None = None
    split: StrictBool = True

    _known_model = field_validator("model")(lambda v: _check_model(v))

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v or v.isspace():
            raise ValueError("prompt is empty")
        return v


class _BatchForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: CustomId
    method: Literal["POST"] = "POST"
    url: Literal["/v1/chat/completions"] = "/v1/chat/completions"
    body: ChatBody
    metadata: dict[str, Any] | None = None
    priority: Priority = 0
    tenant: Tenant | None = None
    split: StrictBool = True


_USER = ChatMessage.model_validate


def _job(**fields: Any) -> InferenceJob:
    return InferenceJob.model_validate(fields)


def _stop_list(stop: str | list[str] | None) -> list[str] | None:
    return [stop] if isinstance(stop, str) else stop


def parse_job(obj: Any) -> InferenceJob:
    """Normalise one input object (either form, or an InferenceJob) into an InferenceJob.

    Raises pydantic.ValidationError; callers turn it into line- and field-named problems.
    """
    if isinstance(obj, InferenceJob):
        return obj
    if not isinstance(obj, dict):
        raise TypeError("a job must be a JSON object")
    if "body" in obj or "url" in obj or "method" in obj:
        b = _BatchForm.model_validate(obj)
        body = b.body
        # Validated again on purpose: in pydantic 2 a validation runs in Rust and costs less than
        # model_construct's Python loop (this is on the bulk submit path, 10^5-10^6 jobs).
        return _job(
            custom_id=b.custom_id, messages=body.messages,
            max_tokens=_pick_max(body.max_tokens, body.max_completion_tokens), model=body.model or "auto",
            temperature=body.temperature, top_p=body.top_p, stop=_stop_list(body.stop),
            metadata=b.metadata, priority=b.priority, tenant=b.tenant, split=b.split,
        )
    if "prompt" in obj:
        s = _ShortForm.model_validate(obj)
        messages = [ChatMessage.model_construct(role="system", content=s.system)] if s.system else []
        messages.append(_USER({"role": "user", "content": s.prompt}))
        return _job(
            custom_id=s.custom_id, messages=messages,
            max_tokens=_pick_max(s.max_tokens, s.max_completion_tokens), model=s.model or "auto",
            temperature=s.temperature, top_p=s.top_p, stop=_stop_list(s.stop),
            metadata=s.metadata, priority=s.priority, tenant=s.tenant, split=s.split,
        )
    return InferenceJob.model_validate(obj)


def _pick_max(max_tokens: int | None, max_completion_tokens: int | None) -> int | None:
    return max_completion_tokens if max_completion_tokens is not None else max_tokens


