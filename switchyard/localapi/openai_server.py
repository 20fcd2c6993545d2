"""The OpenAI chat-completions wire format (also what ``vllm serve`` speaks), simulated.

Shapes follow ``openai.types.chat.ChatCompletion`` and the error envelope ``{"error": {message, type, param,
code}}``; rate-limit headers are ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with resets as Go
durations ("1s", "6m0s", "20ms").
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
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

DEFAULT_MODELS = ["gpt-4-turbo"]
ROLES = {"system", "developer", "user", "assistant", "tool"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                404: "invalid_request_error", 409: "invalid_request_error", 422: "invalid_request_error"}


def go_duration(seconds: float) -> str:
    """Seconds as OpenAI writes its reset headers: "20ms", "1.5s", "6m0s", "1h0m0s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours >= 1:
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes >= 1 else text


class OpenAIDialect(Dialect):
    name = "openai"
    base_path = "/v1"
    completion_path = "/v1/chat/completions"
    models_path = "/v1/models"
    request_id_header = "x-request-id"

    def parse(self, body: Any, headers: Mapping[str, str], context_window: int | None) -> ParsedCall:
        if not isinstance(body, dict):
            raise DialectError(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise DialectError(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DialectError(400, "[] is too short - 'messages'", param="messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise DialectError(400, f"Invalid value for 'messages[{i}].role'.", param=f"messages[{i}]")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise DialectError(400, f"Invalid 'max_tokens': {max_tokens!r}.", param="max_tokens")
        call = ParsedCall(model, prompt_texts(body), max_tokens)
        prompt = prompt_tokens_of(call.texts)
        wanted = prompt + (max_tokens or 0)
        if context_window is not None and wanted > context_window:
            raise DialectError(
                400,
                f"This model's maximum context length is {context_window} tokens. However, you requested "
                f"{wanted} tokens ({prompt} in the messages, {max_tokens or 0} in the completion). "
                "Please reduce the length of the messages or completion.",
                code="context_length_exceeded", param="messages")
        return call

    def success_body(self, call: ParsedCall, done: Completion) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": "fp_simulated",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": done.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "length" if done.truncated else "stop",
            }],
            "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                      "total_tokens": done.prompt_tokens + done.completion_tokens},
        }

    def error_body(self, status: int, message: str, request_id: str, *, code: str | None = None,
                   param: str | None = None, kind: str | None = None) -> dict[str, Any]:
        if status == 429:
            etype = kind or "requests"  # OpenAI names the exhausted bucket in "type"
            code = code or "rate_limit_exceeded"
        else:
            etype = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": etype, "param": param, "code": code}}

    def limit_headers(self, snap: LimitSnapshot) -> dict[str, str]:
        headers: dict[str, str] = {}
        if snap.requests_limit is not None:
            headers["x-ratelimit-limit-requests"] = str(snap.requests_limit)
            headers["x-ratelimit-remaining-requests"] = str(snap.requests_remaining)
            headers["x-ratelimit-reset-requests"] = go_duration(snap.requests_reset_s)
        if snap.tokens_limit is not None:
            headers["x-ratelimit-limit-tokens"] = str(snap.tokens_limit)
            headers["x-ratelimit-remaining-tokens"] = str(snap.tokens_remaining)
            headers["x-ratelimit-reset-tokens"] = go_duration(snap.tokens_reset_s)
        return headers

    def models_body(self, models: list[str]) -> dict[str, Any]:
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "switchyard-simulated"}
            for m in models or DEFAULT_MODELS]}

    def new_request_id(self) -> str:
        return f"req_{secrets.token_hex(16)}"


def openai_server(**kwargs: Any) -> SimulatedAPIServer:
    """A simulated OpenAI API (not yet started): ``with openai_server(rpm=60) as srv: srv.base_url``.

    Keyword arguments are those of :class:`SimulatedAPIServer` (host, port, rpm, tpm, api_key,
    context_window, models, delay_s).
    """
    kwargs.setdefault("models", DEFAULT_MODELS)
    return SimulatedAPIServer(OpenAIDialect(), **kwargs)
