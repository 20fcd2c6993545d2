"""The one interface every inference backend implements: self-hosted engines and commercial providers.

A backend is asynchronous: many ``generate`` calls are in flight at once on one event loop, which is what lets
vLLM batch continuously and what lets an API worker keep many requests open. Backends raise only errors from
:mod:`switchyard.errors` (EngineDeadError, RetryableError subclasses, FatalError subclasses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One chat completion to run."""

    request_id: str  # unique per attempt; used as the engine's request id and in logs
    messages: list[dict[str, Any]]  # OpenAI-style chat messages: {"role": ..., "content": ...}
    max_tokens: int  # upper bound of completion tokens
    temperature: float | None = None  # None: the backend's default
    top_p: float | None = None
    stop: list[str] | None = None
    model: str | None = None  # the provider/served model id, when the backend serves several
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific options passed through


@dataclass(slots=True)
class GenerationResult:
    """What came back: text, why it stopped, real token counts and timings."""

    text: str
    finish_reason: str  # "stop" | "length" (OpenAI's vocabulary; Anthropic's is mapped onto it)
    prompt_tokens: int
    completion_tokens: int
    model: str  # the model id that actually served the request
    inference_s: float  # wall time from submission to the engine to the last token
    time_to_first_token_s: float | None = None
    engine_queue_s: float = 0.0  # time spent waiting inside the engine before being scheduled
    simulated: bool = False  # True when no real model produced this text
    response_id: str | None = None  # provider's id (chatcmpl-..., msg_...), when there is one
    request_id: str | None = None  # provider's x-request-id / request-id header, when there is one
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """An inference backend held warm by one worker process."""

    #: Human-readable kind, e.g. "vllm-inprocess", "vllm-remote", "simulated", "openai", "anthropic".
    kind: str
    #: True when results are not produced by a real model.
    simulated: bool

    async def start(self) -> None:
        """Load or connect. Called once per worker process, before the first job."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one request; safe to call concurrently many times."""
        ...

    async def shutdown(self) -> None:
        """Release the engine or connections."""
