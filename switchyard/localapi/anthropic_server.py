"""The Anthropic Messages wire format, simulated.

Shapes follow ``anthropic.types.Message`` and the error envelope ``{"type": "error", "error": {type,
message}}``; rate-limit headers are ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` with
resets as RFC 3339 instants. Like API version 2026-10-21 (what anthropic>=2 sends), sampling parameters
(temperature, top_p, top_k) are refused, so a client that still sends them fails here as it would for real.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from switchyard.localapi.server import (
    Completion,
    Dialect,
    DialectError,
    LimitSnapshot,
    ParsedCall,
    SimulatedAPIServer,
    prompt_texts,
    prompt_tokens_of,
)

DEFAULT_MODELS = ["claude-3-opus-20240229"]
ROLES = {"user", "assistant", "system"}
SAMPLING_REMOVED_IN = "2026-10-21"  # first API version that rejects temperature/top_p/top_k
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


def rfc3339_in(seconds: float) -> str:
    """The instant ``seconds`` from now, as Anthropic writes its reset headers (whole seconds, UTC)."""
    when = datetime.now(UTC) + timedelta(seconds=math.ceil(max(0.0, seconds)))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class AnthropicDialect(Dialect):
    name = "anthropic"
    base_path = ""  # the Anthropic SDK's base URL has no /v1
    completion_path = "/v1/messages"
    models_path = "/v1/models"
    request_id_header = "request-id"

    def parse(self, body: Any, headers: Mapping[str, str], context_window: int | None) -> ParsedCall:
        version = headers.get("anthropic-version")
        if not version:
            raise DialectError(400, "anthropic-version: header is required")
        if not isinstance(body, dict):
            raise DialectError(400, "Request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise DialectError(400, "model: Field required")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise DialectError(400, "max_tokens: Field required (an integer >= 1)")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DialectError(400, "messages: at least one message is required")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
                raise DialectError(400, f"messages.{i}: a message needs a role (user|assistant) and content")
        if version >= SAMPLING_REMOVED_IN:
            for name in ("temperature", "top_p", "top_k"):
                if name in body:
                    raise DialectError(400, f"{name}: not supported with anthropic-version {version}")
        call = ParsedCall(model, prompt_texts(body), max_tokens)
        prompt = prompt_tokens_of(call.texts)
        if context_window is not None and prompt > context_window:
            raise DialectError(400, f"prompt is too long: {prompt} tokens > {context_window} maximum")
        return call

    def success_body(self, call: ParsedCall, done: Completion) -> dict[str, Any]:
        return {
            "id": f"msg_01{secrets.token_hex(11)}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [{"type": "text", "text": done.text}],
            "stop_reason": "max_tokens" if done.truncated else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": done.prompt_tokens, "output_tokens": done.completion_tokens},
        }

    def error_body(self, status: int, message: str, request_id: str, *, code: str | None = None,
                   param: str | None = None, kind: str | None = None) -> dict[str, Any]:
        etype = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}

    def limit_headers(self, snap: LimitSnapshot) -> dict[str, str]:
        headers: dict[str, str] = {}
        if snap.requests_limit is not None:
            headers["anthropic-ratelimit-requests-limit"] = str(snap.requests_limit)
            headers["anthropic-ratelimit-requests-remaining"] = str(snap.requests_remaining)
            headers["anthropic-ratelimit-requests-reset"] = rfc3339_in(snap.requests_reset_s)
        if snap.tokens_limit is not None:
            headers["anthropic-ratelimit-tokens-limit"] = str(snap.tokens_limit)
            headers["anthropic-ratelimit-tokens-remaining"] = str(snap.tokens_remaining)
            headers["anthropic-ratelimit-tokens-reset"] = rfc3339_in(snap.tokens_reset_s)
        return headers

    def models_body(self, models: list[str]) -> dict[str, Any]:
        names = models or DEFAULT_MODELS
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = [{"type": "model", "id": m, "display_name": f"{m} (simulated)", "created_at": created,
                 "lifecycle": "active"} for m in names]
        return {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}

    def new_request_id(self) -> str:
        return f"req_01{secrets.token_hex(11)}"


def anthropic_server(**kwargs: Any) -> SimulatedAPIServer:
    """A simulated Anthropic API (not yet started): ``with anthropic_server(tpm=10_000) as srv: ...``.

    Keyword arguments are those of :class:`SimulatedAPIServer`.
    """
    kwargs.setdefault("models", DEFAULT_MODELS)
    return SimulatedAPIServer(AnthropicDialect(), **kwargs)
