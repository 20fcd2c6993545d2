"""OpenAI, Anthropic and remote-vLLM backends: the real SDKs against the local servers, real sockets."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from switchyard.errors import (
    ContextLengthExceeded,
    ProviderFatalError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderRetryableError,
    RetryableError,
)
from switchyard.localapi import RequestRecord, SimulatedAPIServer, anthropic_server, openai_server
from workers.engines.base import Backend, GenerationRequest, GenerationResult
from workers.engines.vllm_remote import RemoteVLLMBackend, normalize_base_url
from workers.providers.anthropic_api import AnthropicBackend, split_messages
from workers.providers.openai_api import OpenAIBackend, build_chat_params

TIMEOUT_S = 2.0


@dataclass
class Provider:
    name: str
    server: SimulatedAPIServer
    make: Callable[..., Backend]  # (**backend kwargs) -> a backend pointed at ``server``
    model: str


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, SimulatedAPIServer]]:
    with openai_server() as oai, anthropic_server() as ant:
        yield {"openai": oai, "anthropic": ant}


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest, servers: dict[str, SimulatedAPIServer]) -> Provider:
    srv = servers[request.param]
    srv.reset()
    srv.set_limits(rpm=None, tpm=None)
    srv.context_window = None
    if request.param == "openai":
        return Provider("openai", srv, lambda **kw: OpenAIBackend(
            "gpt-4-turbo", **{"base_url": srv.base_url, "timeout_s": TIMEOUT_S, **kw}), "gpt-4-turbo")
    return Provider("anthropic", srv, lambda **kw: AnthropicBackend(
        "claude-3-opus-20240229", **{"base_url": srv.base_url, "timeout_s": TIMEOUT_S, **kw}),
        "claude-3-opus-20240229")


def req(content: str = "Summarise the plot of Hamlet in one sentence.", *, max_tokens: int = 200,
        **kw: Any) -> GenerationRequest:
    return GenerationRequest("job-1-attempt-1", [{"role": "user", "content": content}], max_tokens, **kw)


def model_calls(srv: SimulatedAPIServer) -> list[RequestRecord]:
    """The log without start()'s GET /v1/models probe."""
    return [r for r in srv.requests() if r.path == srv.dialect.completion_path]


def generate(backend: Backend, *requests: GenerationRequest) -> list[GenerationResult | BaseException]:
    """Start the backend, run the requests concurrently, shut down; errors are returned, not raised."""
    async def go() -> list[GenerationResult | BaseException]:
        await backend.start()
        try:
            return await asyncio.gather(*(backend.generate(r) for r in requests), return_exceptions=True)
        finally:
            await backend.shutdown()

    return asyncio.run(go())


def one(backend: Backend, request: GenerationRequest | None = None) -> GenerationResult:
    (outcome,) = generate(backend, request or req())
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


# --- success ----------------------------------------------------------------------------------------------


def test_success_records_usage_ids_and_the_simulated_flag(provider: Provider) -> None:
    backend = provider.make()
    assert isinstance(backend, Backend) and backend.kind == provider.name
    prompt = "Summarise the plot of Hamlet in one sentence."
    result = one(backend, req(prompt))
    assert result.text.startswith(f"[simulated {provider.model}]")
    assert result.simulated is True and result.model == provider.model
    assert backend.simulated is True  # asked at start(): the worker warns before the first job
    assert result.prompt_tokens == math.ceil(len(prompt) / 4) and result.completion_tokens > 0
    assert result.finish_reason == "stop" and result.inference_s > 0
    (record,) = model_calls(provider.server)
    assert result.request_id == record.request_id and record.status == 200
    prefix = "chatcmpl-" if provider.name == "openai" else "msg_"
    assert result.response_id and result.response_id.startswith(prefix)


def test_max_tokens_is_honoured_and_reported_as_length(provider: Provider) -> None:
    result = one(provider.make(), req(max_tokens=3))
    assert result.completion_tokens == 3 and result.finish_reason == "length"


def test_rate_limit_headers_reach_the_result_for_the_shared_limiter(provider: Provider) -> None:
    provider.server.set_limits(rpm=100, tpm=50_000)
    result = one(provider.make())
    limits = result.extra["ratelimit"]
    assert limits["requests_limit"] == 100 and limits["requests_remaining"] == 99
    assert limits["tokens_remaining"] == 50_000 - result.prompt_tokens - result.completion_tokens
    assert 55 <= limits["tokens_reset_s"] <= 60


def test_concurrent_requests_on_one_backend(provider: Provider) -> None:
    outcomes = generate(provider.make(), *(req(f"question {i}") for i in range(20)))
    assert all(isinstance(o, GenerationResult) for o in outcomes)
    assert len(model_calls(provider.server)) == 20


# --- errors -----------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_rate_limited_with_that_delay(provider: Provider) -> None:
    provider.server.fail_next(status=429, retry_after=7)
    with pytest.raises(ProviderRateLimited) as info:
        one(provider.make())
    assert info.value.retry_after == 7.0 and info.value.status == 429 and info.value.provider == provider.name


def test_server_side_rpm_and_tpm_limits_surface_as_rate_limited(provider: Provider) -> None:
    provider.server.set_limits(rpm=2, tpm=None)
    outcomes = generate(provider.make(), *(req(f"q{i}") for i in range(3)))
    limited = [o for o in outcomes if isinstance(o, ProviderRateLimited)]
    assert len(limited) == 1 and 55 <= (limited[0].retry_after or 0) <= 60
    provider.server.reset()
    provider.server.set_limits(rpm=None, tpm=100)
    outcomes = generate(provider.make(), *(req("x" * 200, max_tokens=30) for _ in range(3)))
    assert sum(isinstance(o, ProviderRateLimited) for o in outcomes) >= 1
    assert provider.server.rate_limited_count == sum(isinstance(o, ProviderRateLimited) for o in outcomes)


@pytest.mark.parametrize("status", [500, 502, 503, 529, 408])
def test_server_errors_are_retryable(provider: Provider, status: int) -> None:
    provider.server.fail_next(status=status, retry_after=2 if status == 503 else None)
    with pytest.raises(ProviderRetryableError) as info:
        one(provider.make())
    assert type(info.value) is ProviderRetryableError and info.value.status == status
    assert info.value.retry_after == (2.0 if status == 503 else None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_fatal_with_the_provider_message(provider: Provider, status: int) -> None:
    provider.server.fail_next(status=status, message="the provider explains why")
    with pytest.raises(ProviderFatalError) as info:
        one(provider.make())
    assert info.value.status == status and "the provider explains why" in str(info.value)


def test_a_wrong_key_is_fatal_and_never_quoted(provider: Provider) -> None:
    key = "sk-test-very-secret-0123456789"
    provider.server.fail_next(status=401, message=f"Incorrect API key provided: {key}")
    with pytest.raises(ProviderFatalError) as info:
        one(provider.make(api_key=key))
    assert key not in str(info.value)
    # The SDK's exception quotes the server verbatim: it must not ride along into a logged traceback.
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_timeout_is_retryable_and_prompt(provider: Provider) -> None:
    # A server of its own: stopping it wakes the handler still holding the response.
    with (openai_server if provider.name == "openai" else anthropic_server)(delay_s=2.0) as slow:
        started = time.perf_counter()
        with pytest.raises(ProviderRetryableError, match="timed out"):
            one(provider.make(base_url=slow.base_url, timeout_s=0.2))
        assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("kind", ["non_json", "html", "wrong_shape"])
def test_malformed_bodies_are_retryable(provider: Provider, kind: str) -> None:
    provider.server.malformed_next(kind=kind)
    with pytest.raises(ProviderRetryableError, match="malformed"):
        one(provider.make())


def test_a_dropped_connection_is_retryable(provider: Provider) -> None:
    provider.server.drop_next()
    with pytest.raises(ProviderRetryableError) as info:
        one(provider.make())
    assert isinstance(info.value, RetryableError) and info.value.status is None


def test_context_length_errors_are_their_own_fatal_error(provider: Provider) -> None:
    provider.server.context_window = 100
    with pytest.raises(ContextLengthExceeded):
        one(provider.make(), req("word " * 200, max_tokens=50))


def test_a_missing_key_fails_at_start_and_nothing_is_sent(provider: Provider,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    backend = provider.make(base_url=None)  # the real provider, no key
    with pytest.raises(ProviderNotConfigured):
        asyncio.run(backend.start())
    one(provider.make(), req("the local server needs no key"))  # a local base_url: a placeholder will do
    assert provider.server.saw_prompt("the local server needs no key")
    assert not provider.server.saw_prompt("Summarise the plot of Hamlet in one sentence.")


def test_an_unreachable_server_is_not_called_simulated(provider: Provider) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = provider.make(base_url=f"http://127.0.0.1:{port}" + provider.server.dialect.base_path)
    with pytest.raises(ProviderRetryableError, match="connection failed"):
        one(backend)
    assert backend.simulated is False


def test_logs_at_info_and_above_carry_no_key_prompt_or_response(provider: Provider,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    key, prompt = "sk-test-logged-nowhere-42", "my confidential prompt about account 9911"
    caplog.set_level(logging.DEBUG)
    result = one(provider.make(api_key=key), req(prompt, temperature=0.3))
    provider.server.fail_next(status=400, message=f"bad request for {key}")
    with pytest.raises(ProviderFatalError):
        one(provider.make(api_key=key), req(prompt))
    loud = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert loud  # the backends do log at INFO (start-up), so this looked at something
    assert key not in loud and prompt not in loud and result.text not in loud


# --- request mapping --------------------------------------------------------------------------------------


def test_anthropic_gets_a_top_level_system_prompt_and_alternating_turns(servers: dict[str, Any]) -> None:
    srv = servers["anthropic"]
    srv.reset()
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Part one."},
                {"role": "user", "content": [{"type": "text", "text": "Part two."}]},
                {"role": "assistant", "content": "Ok."}, {"role": "user", "content": "Go on."}]
    assert split_messages(messages) == ("You are terse.", [
        {"role": "user", "content": "Part one.\n\nPart two."}, {"role": "assistant", "content": "Ok."},
        {"role": "user", "content": "Go on."}])
    result = one(AnthropicBackend("claude-3-opus-20240229", base_url=srv.base_url),
                 GenerationRequest("r", messages, 50, temperature=0.2, stop=["END"]))
    # Accepted by a server that, like API version 2026-10-21, refuses temperature: it was left out, visibly.
    assert result.extra["ignored_params"] == ["temperature"]
    (record,) = model_calls(srv)
    assert record.prompt_head.startswith("You are terse.")  # the system text arrived as `system`
    assert srv.saw_prompt("Part one.\n\nPart two.")


def test_anthropic_can_be_told_to_send_sampling_params(servers: dict[str, Any]) -> None:
    srv = servers["anthropic"]
    backend = AnthropicBackend("claude-3-opus-20240229", base_url=srv.base_url, sampling_params="send")
    with pytest.raises(ProviderFatalError, match="temperature"):  # this server, like the API, refuses them
        one(backend, req(temperature=0.0))


def test_openai_request_params() -> None:
    extra = {"extra_body": {"seed": 7}, "simulated_output_tokens": 5}  # the second is not the provider's
    params = build_chat_params(req(temperature=0.1, top_p=0.9, stop=["\n\n"], extra=extra),
                               model="gpt-4-turbo", max_tokens_param="max_completion_tokens")
    assert params["max_completion_tokens"] == 200 and "max_tokens" not in params
    assert (params["temperature"], params["top_p"], params["stop"]) == (0.1, 0.9, ["\n\n"])
    assert params["extra_body"] == {"seed": 7}


# --- remote vLLM ------------------------------------------------------------------------------------------


def test_remote_vllm_round_robins_over_hosts() -> None:
    with openai_server(models=["llama-3-70b"]) as a, openai_server(models=["llama-3-70b"]) as b:
        backend = RemoteVLLMBackend("llama-3-70b", [a.url, b.base_url])  # with and without /v1
        assert backend.kind == "vllm-remote" and isinstance(backend, Backend)
        outcomes = generate(backend, *(req(f"q{i}") for i in range(6)))
        assert all(isinstance(o, GenerationResult) and o.simulated for o in outcomes)
        assert len(model_calls(a)) == 3 and len(model_calls(b)) == 3
        hosts = {o.extra["host"] for o in outcomes if isinstance(o, GenerationResult)}
        assert hosts == {a.base_url, b.base_url}
        a.fail_next(status=503)
        b.fail_next(status=503)
        with pytest.raises(ProviderRetryableError) as info:
            one(RemoteVLLMBackend("llama-3-70b", [a.url]))
        assert info.value.provider == "vllm-remote"


def test_remote_vllm_base_urls() -> None:
    assert normalize_base_url("http://gpu1:8000") == "http://gpu1:8000/v1"
    assert normalize_base_url("http://gpu1:8000/v1/") == "http://gpu1:8000/v1"
    with pytest.raises(Exception, match="not an http"):
        normalize_base_url("gpu1:8000")
