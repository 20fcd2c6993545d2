"""OpenAI chat completions as a :class:`~workers.engines.base.Backend`, and the OpenAI-compatible call that
remote vLLM reuses (``vllm serve`` speaks the same protocol).

The SDK's own retries are off (``max_retries=0``): the worker owns retries so that Retry-After is honoured
across processes through the shared limiter. Request building and response reading are pure functions; the
only I/O is :func:`chat_completion`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import openai
from openai.types.chat import ChatCompletion

from switchyard.tokens import estimate_messages_tokens, estimate_text_tokens
from workers.engines.base import GenerationRequest, GenerationResult
from workers.providers.errors_map import (
    SIMULATED_HEADER,
    error_from_exception,
    malformed,
    public_url,
    require_api_key,
    response_meta,
)

log = logging.getLogger(__name__)

MaxTokensParam = Literal["max_tokens", "max_completion_tokens"]
#: ``request.extra[EXTRA_BODY_KEY]``: extra JSON body fields for the provider (e.g. vLLM's ``top_k``).
EXTRA_BODY_KEY = "extra_body"
OPENAI_HOST = "api.openai.com"
PROBE_TIMEOUT_S = 2.0
_FINISH = {"stop": "stop", "length": "length"}


def make_client(*, api_key: str, base_url: str | None, timeout_s: float) -> openai.AsyncOpenAI:
    timeout = openai.Timeout(timeout_s, connect=min(5.0, timeout_s))
    return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)


async def probe_simulated(list_models: Callable[[], Awaitable[Any]]) -> bool:
    """Whether a server says it is a simulator, asked with a free ``GET /v1/models`` (a raw response).

    Best effort: a server that is down or refuses says nothing, and each result still carries its own flag.
    """
    try:
        raw = await list_models()
    except Exception as exc:
        log.debug("simulator probe failed: %s", type(exc).__name__)
        return False
    return raw.headers.get(SIMULATED_HEADER) == "true"


def build_chat_params(request: GenerationRequest, *, model: str,
                      max_tokens_param: MaxTokensParam = "max_tokens") -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for one request."""
    params: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in request.messages],
        max_tokens_param: request.max_tokens,
    }
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.stop:
        params["stop"] = list(request.stop)
    body = request.extra.get(EXTRA_BODY_KEY)
    if body:  # explicit only: other keys of request.extra are Switchyard's and must not reach a paid API
        params["extra_body"] = dict(body)
    return params


def chat_result(completion: object, headers: Mapping[str, str], *, provider: str, model: str,
                messages: list[dict[str, Any]], elapsed_s: float,
                request_id_header: str = "x-request-id") -> GenerationResult:
    """Read a parsed chat completion. The SDK parses leniently, so every field is checked here: a body of
    the wrong shape is a malformed (retryable) response, not a crash."""
    request_id, simulated, ratelimit = response_meta(headers, request_id_header)
    if not isinstance(completion, ChatCompletion):
        raise malformed(provider, f"expected a chat completion, got {type(completion).__name__}",
                        status=200, request_id=request_id)
    choices = getattr(completion, "choices", None)
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    text = getattr(message, "content", None) if message is not None else None
    if message is None or not isinstance(text, str | None):
        raise malformed(provider, "no choices[0].message in the chat completion", status=200,
                        request_id=request_id)
    raw_finish = getattr(choices[0], "finish_reason", None)  # type: ignore[index]
    extra: dict[str, Any] = {"provider": provider, "ratelimit": ratelimit}
    if raw_finish not in _FINISH:
        extra["finish_reason_raw"] = raw_finish  # content_filter, tool_calls...: kept for the record
    usage = getattr(completion, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
        # Some OpenAI-compatible servers omit usage; estimate rather than lose the result, and say so.
        prompt_tokens = estimate_messages_tokens(messages)
        completion_tokens = estimate_text_tokens(text or "")
        extra["usage_estimated"] = True
    served = getattr(completion, "model", None)
    return GenerationResult(
        text=text or "",
        finish_reason=_FINISH.get(str(raw_finish), "stop"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=served if isinstance(served, str) and served else model,
        inference_s=elapsed_s,
        simulated=simulated,
        response_id=getattr(completion, "id", None),
        request_id=request_id,
        extra=extra,
    )


async def chat_completion(client: openai.AsyncOpenAI, request: GenerationRequest, *, provider: str,
                          model: str, max_tokens_param: MaxTokensParam = "max_tokens",
                          secrets: tuple[str | None, ...] = ()) -> GenerationResult:
    """One non-streaming chat completion through the SDK; raises only :mod:`switchyard.errors`."""
    params = build_chat_params(request, model=model, max_tokens_param=max_tokens_param)
    started = time.perf_counter()
    try:
        raw = await client.chat.completions.with_raw_response.create(**params)
    except Exception as exc:
        err = error_from_exception(provider, exc, secrets=secrets)
        log.debug("%s request %s failed: %s", provider, request.request_id, type(err).__name__)
        raise err from None  # the SDK error may quote what the server sent; ours is redacted
    try:
        completion = raw.parse()
    except Exception as exc:  # a 2xx body that is not JSON (a proxy's error page, a truncated body)
        raise malformed(provider, f"{type(exc).__name__}: {exc}", status=raw.status_code,
                        request_id=raw.headers.get("x-request-id")) from None
    result = chat_result(completion, raw.headers, provider=provider, model=model, messages=request.messages,
                         elapsed_s=time.perf_counter() - started)
    log.debug("%s request %s ok: provider id %s, %s+%s tokens", provider, request.request_id,
              result.request_id, result.prompt_tokens, result.completion_tokens)
    return result


class OpenAIBackend:
    """GPT-4 Turbo and friends through ``openai.AsyncOpenAI`` (or any server that speaks its protocol).

    ``base_url`` points at another server (e.g. the local simulator); then a missing key is replaced by a
    placeholder. ``max_tokens_param``: GPT-4 Turbo takes ``max_tokens``; newer models want
    ``max_completion_tokens``.
    """

    kind = "openai"
    #: Set at start() when a non-official server says it is a simulator; each result also says so.
    simulated = False

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 timeout_s: float = 120.0, max_tokens_param: MaxTokensParam = "max_tokens") -> None:
        self.model = model
        self._api_key, self._base_url = api_key, base_url
        self.timeout_s = timeout_s
        self.max_tokens_param: MaxTokensParam = max_tokens_param
        self._client: openai.AsyncOpenAI | None = None
        self._key: str | None = None

    async def start(self) -> None:
        self._key = require_api_key("openai", self._api_key, env_var="OPENAI_API_KEY",
                                    base_url=self._base_url, official_host=OPENAI_HOST)
        self._client = make_client(api_key=self._key, base_url=self._base_url, timeout_s=self.timeout_s)
        if self._client.base_url.host != OPENAI_HOST:
            client = self._client
            self.simulated = await probe_simulated(
                lambda: client.models.with_raw_response.list(timeout=PROBE_TIMEOUT_S))
        log.info("openai backend ready: model %s, base_url %s, simulated %s", self.model,
                 public_url(self._client.base_url), self.simulated)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._client is None:
            raise RuntimeError("OpenAIBackend.generate() called before start()")
        return await chat_completion(self._client, request, provider="openai",
                                     model=request.model or self.model,
                                     max_tokens_param=self.max_tokens_param, secrets=(self._key,))

    async def shutdown(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
