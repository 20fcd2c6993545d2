"""The wire-independent half of the local provider servers: what a call asks, what it answers, how its
usage is computed, and the interface a dialect (OpenAI, Anthropic) implements."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from switchyard.localapi.limits import LimitSnapshot

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SIMULATED_HEADER = "x-switchyard-simulated"
PROMPT_HEAD_CHARS = 24
MALFORMED_KINDS = ("non_json", "html", "wrong_shape")


def prompt_hash(text: str) -> str:
    """The hash under which the request log remembers a prompt or one message's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- what a model call asks for, and what the simulator answers --------------------------------------------


def prompt_texts(body: Any) -> list[str]:
    """The texts of a chat request, system prompt first: both dialects put text in the same places."""
    if not isinstance(body, dict):
        return []
    parts = [body["system"]] if body.get("system") is not None else []
    messages = body.get("messages")
    parts += [m.get("content") for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    return [_text_of(p) for p in parts]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts / Anthropic content blocks
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """A valid model request, reduced to what the simulator needs."""

    model: str
    texts: list[str]
    max_tokens: int | None


@dataclass(frozen=True, slots=True)
class Completion:
    """The simulated answer, computed on arrival so that TPM counts its real size."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool  # stopped by max_tokens or the context window


def prompt_tokens_of(texts: list[str]) -> int:
    """The simulator's prompt token count: about 4 characters a token."""
    return max(1, math.ceil(len("\n".join(texts)) / 4))


def simulate(call: ParsedCall, *, context_window: int | None = None) -> Completion:
    """Deterministic text and usage: prompt ≈ chars/4, completion = min(max_tokens, f(prompt))."""
    joined = "\n".join(call.texts)
    prompt_tokens = prompt_tokens_of(call.texts)
    natural = 8 + int(prompt_hash(joined)[:8], 16) % 57  # 8..64 tokens, stable per prompt
    cap = natural if call.max_tokens is None else call.max_tokens
    if context_window is not None:
        cap = min(cap, max(1, context_window - prompt_tokens))
    completion_tokens = max(1, min(natural, cap))
    prefix = f"[simulated {call.model}]"  # simulated output says so wherever it ends up
    words = " ".join(f"tok{i}" for i in range(completion_tokens))
    text = f"{prefix} {words}"[: max(len(prefix), completion_tokens * 4)]
    return Completion(text, prompt_tokens, completion_tokens, truncated=completion_tokens < natural)


class DialectError(Exception):
    """A request the dialect rejects, rendered in that dialect's error format."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class Dialect(ABC):
    """One provider's wire format; see openai_server.py and anthropic_server.py."""

    name: str
    base_path: str  # appended to the server URL to give the SDK's base_url
    completion_path: str
    models_path: str
    request_id_header: str

    @abstractmethod
    def parse(self, body: Any, headers: Mapping[str, str], context_window: int | None) -> ParsedCall:
        """Validate a model request; raise DialectError as the real API would."""

    @abstractmethod
    def success_body(self, call: ParsedCall, done: Completion) -> dict[str, Any]: ...

    @abstractmethod
    def error_body(
        self,
        status: int,
        message: str,
        request_id: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str | None = None,
    ) -> dict[str, Any]: ...

    @abstractmethod
    def limit_headers(self, snap: LimitSnapshot) -> dict[str, str]: ...

    @abstractmethod
    def models_body(self, models: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def new_request_id(self) -> str: ...

    def wrong_shape_body(self, call: ParsedCall) -> dict[str, Any]:
        """Valid JSON that is not the expected object (what a misconfigured proxy might send)."""
        return {"object": "unexpected", "model": call.model, "note": "[simulated] malformed response"}
