"""Provider failures → :mod:`switchyard.errors`, and the rate-limit headers the worker feeds its limiter.

Pure functions: no I/O, no clock unless one is passed in. Both SDKs (openai, anthropic) raise the same family
of exceptions (APIStatusError with ``status_code``/``body``/``response``, APITimeoutError,
APIConnectionError, APIResponseValidationError), so one mapping serves both and any OpenAI-compatible server.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import anthropic
import openai

from switchyard.errors import (
    ContextLengthExceeded,
    ProviderError,
    ProviderFatalError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderRetryableError,
    SwitchyardError,
)

#: Retrying can help: request timeout, lock conflict, rate limit (5xx are handled by range).
RETRYABLE_STATUSES = frozenset({408, 409, 429})
MAX_MESSAGE_CHARS = 500

_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_RE = re.compile(
    r"maximum context length|context window|context length|prompt is too long|too many (input )?tokens",
    re.IGNORECASE,
)
SIMULATED_HEADER = "x-switchyard-simulated"  # same name as switchyard.localapi.SIMULATED_HEADER
_DURATION_RE = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|h|m|s)")

_STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError)
_TIMEOUTS = (openai.APITimeoutError, anthropic.APITimeoutError)
_CONNECTION_ERRORS = (openai.APIConnectionError, anthropic.APIConnectionError)
_VALIDATION_ERRORS = (openai.APIResponseValidationError, anthropic.APIResponseValidationError)


# --- header parsing --------------------------------------------------------------------------------------


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}


def parse_duration(value: str | None) -> float | None:
    """OpenAI's reset durations ("20ms", "1.5s", "6m0s", "1h2m3s") or plain seconds ("2.5") → seconds."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = list(_DURATION_RE.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(p["n"]) * scale[p["unit"]] for p in parts)


def parse_instant(value: str | None, now: float) -> float | None:
    """Anthropic's RFC 3339 reset instants → seconds from ``now`` (never negative)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date)."""
    h = lower_headers(headers)
    now = time.time() if now is None else now
    try:
        return max(0.0, float(h["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = h.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - now)


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(float(value))
    except ValueError:
        return None


def parse_ratelimit(headers: Mapping[str, str] | None, now: float | None = None) -> dict[str, Any]:
    """Both providers' rate-limit headers → one dict for the shared limiter; absent figures are left out.

    Keys: ``{requests,tokens,input_tokens,output_tokens}_{limit,remaining,reset_s}`` (reset in seconds from
    ``observed_at``, a Unix time), plus ``retry_after_s`` when the response carried one.
    """
    h = lower_headers(headers)
    now = time.time() if now is None else now
    out: dict[str, Any] = {}
    for bucket in ("requests", "tokens"):  # OpenAI and proxies: x-ratelimit-<what>-<bucket>
        _put(out, bucket, _int(h.get(f"x-ratelimit-limit-{bucket}")),
             _int(h.get(f"x-ratelimit-remaining-{bucket}")),
             parse_duration(h.get(f"x-ratelimit-reset-{bucket}")))
    for bucket in ("requests", "tokens", "input_tokens", "output_tokens"):  # anthropic-ratelimit-<b>-<what>
        prefix = f"anthropic-ratelimit-{bucket.replace('_', '-')}"
        _put(out, bucket, _int(h.get(f"{prefix}-limit")), _int(h.get(f"{prefix}-remaining")),
             parse_instant(h.get(f"{prefix}-reset"), now))
    retry_after = parse_retry_after(h, now)
    if retry_after is not None:
        out["retry_after_s"] = retry_after
    if out:
        out["observed_at"] = now
    return out


def _put(out: dict[str, Any], bucket: str, limit: int | None, remaining: int | None,
         reset: float | None) -> None:
    for key, value in (("limit", limit), ("remaining", remaining), ("reset_s", reset)):
        if value is not None:
            out[f"{bucket}_{key}"] = value


def retry_after_from(ratelimit: Mapping[str, Any]) -> float | None:
    """When to retry: the server's Retry-After, else when the exhausted bucket(s) reset."""
    if "retry_after_s" in ratelimit:
        return float(ratelimit["retry_after_s"])
    waits = [float(ratelimit[f"{b}_reset_s"]) for b in ("requests", "tokens", "input_tokens", "output_tokens")
             if ratelimit.get(f"{b}_remaining") == 0 and f"{b}_reset_s" in ratelimit]
    return max(waits) if waits else None


def response_meta(headers: Mapping[str, str] | None, request_id_header: str,
                  now: float | None = None) -> tuple[str | None, bool, dict[str, Any]]:
    """From a success response's headers: the provider's request id, the simulated marker, rate limits."""
    h = lower_headers(headers)
    return h.get(request_id_header), h.get(SIMULATED_HEADER) == "true", parse_ratelimit(h, now)


# --- configuration ---------------------------------------------------------------------------------------

#: Sent instead of a key to a local or self-hosted server that does not check keys.
PLACEHOLDER_KEY = "switchyard-local-placeholder"


def require_api_key(provider: str, api_key: str | None, *, env_var: str, base_url: str | None,
                    official_host: str) -> str:
    """The key to use: given, else from ``env_var``, else a placeholder when talking to a non-official
    server (the local simulators, a proxy that injects keys); the provider itself without a key is a
    configuration error raised now rather than a 401 on every job."""
    key = api_key or os.environ.get(env_var)
    if key:
        return key
    host = urlsplit(base_url).hostname if base_url else official_host
    if host and host != official_host:
        return PLACEHOLDER_KEY
    raise ProviderNotConfigured(f"{provider}: no API key (pass api_key or set {env_var})")


def public_url(url: object) -> str:
    """A URL fit for logs: scheme, host, port and path, never user:password@."""
    parts = urlsplit(str(url))
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


# --- errors ----------------------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove secrets (API keys) from a message and keep it short enough to store in a failed result."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def is_context_length_error(message: str, code: str | None = None) -> bool:
    return (code or "") in _CONTEXT_CODES or bool(_CONTEXT_RE.search(message))


def error_from_status(provider: str, status: int, message: str, headers: Mapping[str, str] | None = None,
                      *, code: str | None = None, request_id: str | None = None,
                      secrets: Iterable[str | None] = (), now: float | None = None) -> SwitchyardError:
    """An HTTP error response → the matching Switchyard error; ``message`` is the provider's own text."""
    ratelimit = parse_ratelimit(headers, now)
    text = f"{provider} HTTP {status}: {message}" + (f" (request id {request_id})" if request_id else "")
    text = redact(text, secrets)
    if status in (400, 413, 422) and is_context_length_error(message, code):
        return ContextLengthExceeded(text)
    err: ProviderError
    if status == 429:
        err = ProviderRateLimited(text, provider=provider, status=status,
                                  retry_after=retry_after_from(ratelimit))
    elif status in RETRYABLE_STATUSES or status >= 500:
        err = ProviderRetryableError(text, provider=provider, status=status,
                                     retry_after=ratelimit.get("retry_after_s"))
    else:  # 400, 401, 403, 404, 422 and every other 4xx: the request itself is wrong or not allowed
        err = ProviderFatalError(text, provider=provider, status=status)
    err.ratelimit = ratelimit  # type: ignore[attr-defined]  # the worker feeds these to the shared limiter
    return err


def malformed(provider: str, detail: str, *, status: int | None = None,
              request_id: str | None = None) -> ProviderRetryableError:
    """A response we could not understand: most often a proxy's error page; retry later."""
    rid = f" (request id {request_id})" if request_id else ""
    return ProviderRetryableError(redact(f"{provider} malformed response: {detail}{rid}"), provider=provider,
                                  status=status)


def provider_message(body: object, fallback: str) -> tuple[str, str | None]:
    """The provider's own error message and code from an error body (both SDKs' shapes, and vLLM's)."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return (body.strip() or fallback), None
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            message = inner.get("message")
            code = inner.get("code")
            kind = inner.get("type")
            if isinstance(message, str) and message:
                return message, str(code) if code is not None else (str(kind) if kind else None)
    return fallback, None


def error_from_exception(provider: str, exc: BaseException, *,
                         secrets: Iterable[str | None] = ()) -> SwitchyardError:
    """Any exception out of an SDK call → a Switchyard error (the SDK's retries are off: we decide here)."""
    if isinstance(exc, SwitchyardError):
        return exc
    if isinstance(exc, _STATUS_ERRORS):
        response = exc.response
        message, code = provider_message(exc.body, str(exc))
        return error_from_status(provider, exc.status_code, message, response.headers, code=code,
                                 request_id=getattr(exc, "request_id", None), secrets=secrets)
    if isinstance(exc, _VALIDATION_ERRORS):
        return malformed(provider, str(exc), status=exc.status_code)
    if isinstance(exc, _TIMEOUTS):
        return ProviderRetryableError(f"{provider}: request timed out", provider=provider)
    if isinstance(exc, _CONNECTION_ERRORS):
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
        return ProviderRetryableError(f"{provider}: connection failed ({cause})", provider=provider)
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):  # a 2xx body that is not JSON
        return malformed(provider, f"{type(exc).__name__}: {exc}")
    # Anything else (an SDK precondition, a bug): retrying the same request cannot help.
    return ProviderFatalError(redact(f"{provider}: {type(exc).__name__}: {exc}", secrets), provider=provider)
