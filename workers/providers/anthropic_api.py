"""Anthropic Messages (Claude 3 Opus and friends) as a :class:`~workers.engines.base.Backend`.

anthropic>=2 sends API version 2026-10-21, which refuses ``temperature``/``top_p``/``top_k`` with a 400. By
default they are therefore left out (and the result says so in ``extra["ignored_params"]``);
``sampling_params="send"`` passes them anyway, for a proxy or an API version that still takes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

import anthropic
from anthropic.types import Message

from switchyard.errors import ProviderFatalError
from switchyard.tokens import message_text
from workers.engines.base import GenerationRequest, GenerationResult
from workers.providers.errors_map import (
    error_from_exception,
    malformed,
    public_url,
    require_api_key,
    response_meta,
)
from workers.providers.openai_api import EXTRA_BODY_KEY, PROBE_TIMEOUT_S, probe_simulated

log = logging.getLogger(__name__)

ANTHROPIC_HOST = "api.anthropic.com"
SYSTEM_ROLES = frozenset({"system", "developer"})
# Anthropic's stop reasons in OpenAI's vocabulary (GenerationResult speaks OpenAI's).
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
           "model_context_window_exceeded": "length"}


def split_messages(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, str]]]:
    """OpenAI-style chat → (top-level system prompt, user/assistant turns with same-role runs merged).

    The Messages API wants the system prompt apart and turns that alternate; text parts are flattened.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for m in messages:
        role, text = str(m.get("role", "user")), message_text(m.get("content"))
        if role in SYSTEM_ROLES:
            system.append(text)
            continue
        role = "assistant" if role == "assistant" else "user"  # tool results etc. come back as user turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})
    return ("\n\n".join(system) if system else None), turns


SamplingParams = Literal["drop", "send"]


def build_message_params(request: GenerationRequest, *, model: str,
                         sampling_params: SamplingParams = "drop") -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments of ``messages.create``, and the names of parameters left out."""
    system, turns = split_messages(request.messages)
    if not turns:
        raise ProviderFatalError("anthropic: the request has no user or assistant message",
                                 provider="anthropic")
    params: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": request.max_tokens}
    if system:
        params["system"] = system
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    body = dict(request.extra.get(EXTRA_BODY_KEY) or {})
    sampling = {k: v for k, v in (("temperature", request.temperature), ("top_p", request.top_p))
                if v is not None}
    ignored: list[str] = []
    if sampling_params == "send":
        body.update(sampling)
    else:
        ignored = sorted(sampling)
    if body:
        params["extra_body"] = body
    return params, ignored


def message_result(message: object, headers: Mapping[str, str], *, model: str, elapsed_s: float,
                   ignored: list[str]) -> GenerationResult:
    """Read a parsed Message, checking each field (the SDK parses leniently)."""
    request_id, simulated, ratelimit = response_meta(headers, "request-id")
    if not isinstance(message, Message):
        raise malformed("anthropic", f"expected a message, got {type(message).__name__}", status=200,
                        request_id=request_id)
    content = getattr(message, "content", None)
    usage = getattr(message, "usage", None)
    counts = [getattr(usage, name, None) for name in ("input_tokens", "output_tokens")]
    if not isinstance(content, list) or not all(isinstance(c, int) for c in counts):
        raise malformed("anthropic", "message without content or usage", status=200, request_id=request_id)
    text = "".join(b.text for b in content if getattr(b, "type", None) == "text" and isinstance(b.text, str))
    # Cached prompt tokens are billed and rate-limited too: the prompt is all three.
    cached = sum(getattr(usage, n, None) or 0
                 for n in ("cache_creation_input_tokens", "cache_read_input_tokens"))
    stop_reason = getattr(message, "stop_reason", None)
    extra: dict[str, Any] = {"provider": "anthropic", "ratelimit": ratelimit}
    if stop_reason not in _FINISH:
        extra["finish_reason_raw"] = stop_reason  # refusal, tool_use, pause_turn: kept for the record
    if ignored:
        extra["ignored_params"] = ignored
    served = getattr(message, "model", None)
    return GenerationResult(
        text=text,
        finish_reason=_FINISH.get(str(stop_reason), "stop"),
        prompt_tokens=int(counts[0]) + int(cached),  # type: ignore[arg-type]
        completion_tokens=int(counts[1]),  # type: ignore[arg-type]
        model=served if isinstance(served, str) and served else model,
        inference_s=elapsed_s,
        simulated=simulated,
        response_id=getattr(message, "id", None),
        request_id=request_id,
        extra=extra,
    )


class AnthropicBackend:
    """Claude through ``anthropic.AsyncAnthropic`` with the SDK's retries off (the worker retries)."""

    kind = "anthropic"
    #: Set at start() when a non-official server says it is a simulator; each result also says so.
    simulated = False

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 timeout_s: float = 120.0, sampling_params: SamplingParams = "drop") -> None:
        self.model = model
        self._api_key, self._base_url = api_key, base_url
        self.timeout_s = timeout_s
        self.sampling_params: SamplingParams = sampling_params
        self._client: anthropic.AsyncAnthropic | None = None
        self._key: str | None = None
        self._warned_ignored = False

    async def start(self) -> None:
        self._key = require_api_key("anthropic", self._api_key, env_var="ANTHROPIC_API_KEY",
                                    base_url=self._base_url, official_host=ANTHROPIC_HOST)
        # An explicit timeout also stops the SDK from refusing large non-streaming max_tokens up front.
        timeout = anthropic.Timeout(self.timeout_s, connect=min(5.0, self.timeout_s))
        client = self._client = anthropic.AsyncAnthropic(api_key=self._key, base_url=self._base_url,
                                                         timeout=timeout, max_retries=0)
        if client.base_url.host != ANTHROPIC_HOST:
            self.simulated = await probe_simulated(
                lambda: client.models.with_raw_response.list(timeout=PROBE_TIMEOUT_S))
        log.info("anthropic backend ready: model %s, base_url %s, simulated %s", self.model,
                 public_url(client.base_url), self.simulated)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._client is None:
            raise RuntimeError("AnthropicBackend.generate() called before start()")
        model = request.model or self.model
        params, ignored = build_message_params(request, model=model, sampling_params=self.sampling_params)
        if ignored and not self._warned_ignored:
            self._warned_ignored = True
            log.warning("anthropic: %s not sent (API version 2026-10-21 refuses them); set "
                        "sampling_params='send' to send them anyway", ", ".join(ignored))
        started = time.perf_counter()
        try:
            raw = await self._client.messages.with_raw_response.create(**params)
        except Exception as exc:
            err = error_from_exception("anthropic", exc, secrets=(self._key,))
            log.debug("anthropic request %s failed: %s", request.request_id, type(err).__name__)
            raise err from None  # the SDK error may quote what the server sent; ours is redacted
        try:
            message = await raw.parse()
        except Exception as exc:  # a 2xx body that is not JSON
            raise malformed("anthropic", f"{type(exc).__name__}: {exc}", status=raw.status_code,
                            request_id=raw.headers.get("request-id")) from None
        result = message_result(message, raw.headers, model=model, elapsed_s=time.perf_counter() - started,
                                ignored=ignored)
        log.debug("anthropic request %s ok: provider id %s, %s+%s tokens", request.request_id,
                  result.request_id, result.prompt_tokens, result.completion_tokens)
        return result

    async def shutdown(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
