"""Provider failures → Switchyard errors, and the rate-limit headers behind retry_after (pure functions)."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime

import anthropic
import httpx2
import openai
import pytest

from switchyard.errors import (
    ContextLengthExceeded,
    FatalError,
    ProviderFatalError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderRetryableError,
    RetryableError,
)
from switchyard.localapi.anthropic_server import rfc3339_in
from switchyard.localapi.openai_server import go_duration
from workers.providers.errors_map import (
    PLACEHOLDER_KEY,
    error_from_exception,
    error_from_status,
    parse_duration,
    parse_ratelimit,
    parse_retry_after,
    public_url,
    require_api_key,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("status", "expected"), [
    (400, ProviderFatalError), (401, ProviderFatalError), (403, ProviderFatalError),
    (404, ProviderFatalError), (422, ProviderFatalError),
    (408, ProviderRetryableError), (409, ProviderRetryableError),
    (429, ProviderRateLimited), (500, ProviderRetryableError), (502, ProviderRetryableError),
    (503, ProviderRetryableError), (529, ProviderRetryableError),
])
def test_status_decides_whether_the_job_is_retried(status: int, expected: type) -> None:
    err = error_from_status("openai", status, "something happened")
    assert type(err) is expected
    assert isinstance(err, RetryableError) != isinstance(err, FatalError)
    assert err.status == status and err.provider == "openai"  # type: ignore[attr-defined]
    assert "something happened" in str(err) and str(status) in str(err)


@pytest.mark.parametrize(("headers", "retry_after"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise one wins
    ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
    # No Retry-After: the exhausted bucket's reset says when capacity returns.
    ({"x-ratelimit-remaining-requests": "10", "x-ratelimit-remaining-tokens": "0",
      "x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
    ({"anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-requests-reset": datetime.fromtimestamp(NOW + 12, UTC).isoformat()}, 12.0),
    ({}, None),
])
def test_429_carries_retry_after_from_the_headers(headers: dict[str, str], retry_after: float | None) -> None:
    err = error_from_status("openai", 429, "Rate limit reached", headers, now=NOW)
    assert isinstance(err, ProviderRateLimited)
    assert err.retry_after == (pytest.approx(retry_after) if retry_after is not None else None)


def test_5xx_honours_retry_after_but_not_reset_headers() -> None:
    assert error_from_status("anthropic", 503, "overloaded", {"retry-after": "4"}).retry_after == 4.0  # type: ignore[attr-defined]
    err = error_from_status("anthropic", 500, "oops", {"x-ratelimit-remaining-requests": "0",
                                                       "x-ratelimit-reset-requests": "5s"})
    assert err.retry_after is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "seconds"), [
    ("20ms", 0.02), ("1s", 1.0), ("1.5s", 1.5), ("6m0s", 360.0), ("1h2m3s", 3723.0), ("2.5", 2.5),
    ("soon", None), ("5x", None), ("", None),
])
def test_openai_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize("seconds", [0.02, 0.5, 1, 59.9, 60, 61.25, 360, 3723])
def test_what_the_local_server_writes_the_client_reads_back(seconds: float) -> None:
    assert parse_duration(go_duration(seconds)) == pytest.approx(seconds, abs=0.001)
    now = datetime.now(UTC).timestamp()
    assert parse_ratelimit({"anthropic-ratelimit-tokens-reset": rfc3339_in(seconds)}, now)[
        "tokens_reset_s"] == pytest.approx(seconds, abs=1.01)


def test_ratelimit_headers_of_both_providers_normalize_to_one_dict() -> None:
    openai_headers = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
                      "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
                      "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": "2s"}
    assert parse_ratelimit(openai_headers, NOW) == {
        "requests_limit": 500, "requests_remaining": 499, "requests_reset_s": pytest.approx(0.12),
        "tokens_limit": 30000, "tokens_remaining": 29000, "tokens_reset_s": 2.0, "observed_at": NOW}
    reset = datetime.fromtimestamp(NOW + 20, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    anthropic_headers = {"anthropic-ratelimit-requests-limit": "50",
                         "anthropic-ratelimit-requests-remaining": "3",
                         "anthropic-ratelimit-requests-reset": reset,
                         "anthropic-ratelimit-input-tokens-remaining": "100", "retry-after": "3"}
    assert parse_ratelimit(anthropic_headers, NOW) == {
        "requests_limit": 50, "requests_remaining": 3, "requests_reset_s": 20.0,
        "input_tokens_remaining": 100, "retry_after_s": 3.0, "observed_at": NOW}
    assert parse_ratelimit({"content-type": "application/json"}, NOW) == {}


def test_unparseable_retry_after_is_ignored() -> None:
    assert parse_retry_after({"retry-after": "whenever"}, NOW) is None
    assert parse_retry_after({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, NOW) == 0.0


@pytest.mark.parametrize(("status", "message", "code"), [
    (400, "This model's maximum context length is 128000 tokens. However, you requested 130000 tokens.",
     "context_length_exceeded"),
    (400, "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
          "(4000 in the messages, 1000 in the completion).", "400"),  # vLLM's wording, no useful code
    (400, "prompt is too long: 210000 tokens > 200000 maximum", "invalid_request_error"),  # Anthropic
])
def test_context_length_errors_are_their_own_fatal_error(status: int, message: str, code: str) -> None:
    err = error_from_status("openai", status, message, code=code)
    assert isinstance(err, ContextLengthExceeded) and isinstance(err, FatalError)
    assert not isinstance(error_from_status("openai", 400, "Invalid value for 'temperature'"),
                          ContextLengthExceeded)


def test_the_api_key_never_reaches_the_error_message() -> None:
    key = "sk-live-abcdef0123456789"
    err = error_from_status("openai", 401, f"Incorrect API key provided: {key}", secrets=(key,))
    assert key not in str(err) and "***" in str(err)
    assert len(str(error_from_status("openai", 500, "x" * 5000))) <= 500


def test_urls_are_logged_without_credentials() -> None:
    assert public_url("https://user:sk-secret@proxy.internal:8443/v1") == "https://proxy.internal:8443/v1"
    assert public_url("http://127.0.0.1:8001/v1") == "http://127.0.0.1:8001/v1"


def _response(status: int, body: object, headers: dict[str, str] | None = None,
              url: str = "https://api.openai.com/v1/chat/completions") -> httpx2.Response:
    return httpx2.Response(status, headers=headers, content=json.dumps(body).encode(),
                           request=httpx2.Request("POST", url))


def test_openai_sdk_exceptions_map_with_the_provider_message_and_headers() -> None:
    body = {"message": "Rate limit reached for gpt-4-turbo on tokens per min", "type": "tokens",
            "code": "rate_limit_exceeded"}
    response = _response(429, {"error": body}, {"retry-after": "20", "x-request-id": "req_1"})
    exc = openai.RateLimitError("Error code: 429", response=response, body=body)
    err = error_from_exception("openai", exc)
    assert isinstance(err, ProviderRateLimited) and err.retry_after == 20.0
    assert "Rate limit reached for gpt-4-turbo" in str(err) and "req_1" in str(err)
    bad = {"message": "maximum context length is 8192 tokens", "code": "context_length_exceeded"}
    assert isinstance(error_from_exception("openai", openai.BadRequestError(
        "Error code: 400", response=_response(400, {"error": bad}), body=bad)), ContextLengthExceeded)


def test_anthropic_sdk_exceptions_map_with_the_provider_message() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    response = _response(529, body, {"request-id": "req_01x"}, "https://api.anthropic.com/v1/messages")
    err = error_from_exception("anthropic", anthropic.OverloadedError("Error code: 529", response=response,
                                                                       body=body))
    assert type(err) is ProviderRetryableError and err.status == 529
    assert "Overloaded" in str(err) and "req_01x" in str(err)
    body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    err = error_from_exception("anthropic", anthropic.AuthenticationError(
        "Error code: 401", response=_response(401, body), body=body))
    assert isinstance(err, ProviderFatalError) and "invalid x-api-key" in str(err)


def test_transport_failures_are_retryable() -> None:
    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    for exc in (openai.APITimeoutError(request), openai.APIConnectionError(request=request),
                anthropic.APITimeoutError(request), anthropic.APIConnectionError(request=request),
                json.JSONDecodeError("Expecting value", "<html>", 0)):
        err = error_from_exception("openai", exc)
        assert type(err) is ProviderRetryableError, exc
    assert isinstance(error_from_exception("openai", TypeError("bug")), ProviderFatalError)


def test_a_missing_key_is_a_configuration_error_unless_the_server_is_not_the_provider(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    official = {"env_var": "OPENAI_API_KEY", "official_host": "api.openai.com"}
    with pytest.raises(ProviderNotConfigured):
        require_api_key("openai", None, base_url=None, **official)
    with pytest.raises(ProviderNotConfigured):
        require_api_key("openai", "", base_url="https://api.openai.com/v1", **official)
    assert require_api_key("openai", None, base_url="http://127.0.0.1:8001/v1", **official) == PLACEHOLDER_KEY
    assert require_api_key("openai", "sk-given", base_url=None, **official) == "sk-given"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert require_api_key("openai", None, base_url=None, **official) == "sk-from-env"
