"""One requests-per-minute and tokens-per-minute limiter per model, shared by every worker on every host.

Commercial providers limit a whole organisation, not a worker process: Celery's ``rate_limit`` (per process)
or a gateway's per-instance counters multiply the limit by the number of processes. This limiter keeps one
sliding-window log per model in Redis and decides every admission inside one Lua script (``ratelimit.lua``),
so the check and the charge are atomic across all processes, and all times come from the Redis server's
clock (``TIME``), so clock skew between hosts does not matter.

How it is used, once per HTTP attempt (a retry is a new attempt with a new reservation id), right before
the request goes out -- the client already built, so little runs between admission and arrival::

    rid = f"{job_id}:{attempt}"
    limiter.acquire(rid, prompt_estimate + max_tokens, timeout=30)   # or: await limiter.acquire_async(...)
    try:
        result = call_provider(...)
    except NeverSent:                      # refused before any byte reached the provider
        limiter.release(rid)
        raise
    except ProviderRateLimited as exc:     # our limits are set too high, or someone shares the key
        limiter.settle(rid, 0)
        limiter.penalize(exc.retry_after or 1.0)
        raise
    limiter.settle(rid, result.prompt_tokens + result.completion_tokens)

A request that reached the provider and failed is settled (with 0 after a 429; with its estimate after any other
error, since the provider may have counted it in full), not released: the provider counted it.

``reserve`` either admits or says how long until enough capacity frees (the moment the blocking admission
leaves the window), so waiting callers sleep exactly that long (plus a few ms of jitter) instead of polling.

Why a safety margin, and why it costs so little
-----------------------------------------------
The provider counts a request when it *arrives*, a little after we admit it, and that delay varies (Redis
reply, building the request, a new TLS connection, a descheduled process). If request k is delayed by
``d_k`` and request k+N (N = the limit) by ``d_{k+N}``, the provider sees them ``gap - (d_k - d_{k+N})``
apart. With an exact 60 s window the gap can be exactly 60 s, so a slower old request and a faster new one
put N+1 requests into the provider's 60 s: a 429. Any limiter, however it paces, must keep admissions k and
k+N at least ``window + J`` apart (J = the spread of that delay) to be safe, so its best rate is
``N / (window + J)``.

We therefore count every admission for ``window_s + safety_margin_s`` (the *span*). With the default 0.5 s
margin on a 60 s window the ceiling is 60/60.5 = 99.2 % of the limit, and the sliding log reaches that
ceiling: a waiting worker is admitted the instant the blocking admission expires, so once the first window
is full each "slot" is reused every span (plus a few ms of wake-up). Smooth pacing would not do better (it
needs the same margin) and would waste the first window; the log allows a burst of at most N, which the
provider's own window allows too. Tokens use the same span, keyed on the same admission time, so the same
argument holds.

The margin alone is not enough for the first requests after a start: measured here (bench/rate_limit.py),
a worker thread's first call can reach the provider 1.5 s after its admission (a new connection), so the
next window's requests, admitted a span later and arriving fast, met the provider still counting those
stragglers: 7-36 429s at the first refill. ``settle`` therefore also *re-stamps* the request at its answer:
the provider counted it at arrival, never after the answer, so counting it from the answer can only err on
the safe side, by the call's latency (about 0.3 % of the rate at 200 ms).

Tokens are reserved as an estimate (prompt estimate, rounded up, + max output tokens) because the real count
is only known afterwards; ``settle`` replaces the estimate by the real count. While a request is in flight
its over-estimate holds capacity; that costs ``(estimate/real - 1) * latency / span`` of the token rate
(under 1 % for sub-second latencies). An
estimate *below* the real count cannot be undone afterwards; settle charges the real count so later
admissions wait.

Reservations that are never settled (a worker crashed) simply expire with the span; the keys themselves
expire once idle for a span. ``penalize`` turns a provider 429 (Retry-After / reset headers) into a shared
"blocked until" that stops admissions in every process.

Waiters are not served in FIFO order; a waiter is woken by its own timer, not by a ``settle`` or ``release``
that frees capacity early (it will see that capacity on its next try, or another waiter will).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import redis.asyncio

from switchyard.errors import FatalError, RetryableError

log = logging.getLogger(__name__)

#: Default margin added to the window; see the module docstring. The admission-to-arrival spread of a warm
#: worker is milliseconds (tens under load or with a fresh TLS handshake); 0.5 s covers it many times over
#: and costs 0.8 % of a 60 s window, leaving room under the 97 % target for the in-flight token over-estimate.
DEFAULT_SAFETY_MARGIN_S = 0.5
#: Upper bound of the random delay added to each wait, so waiters told the same instant do not stampede.
DEFAULT_MAX_JITTER_S = 0.01

_LUA = resources.files("workers").joinpath("ratelimit.lua").read_text(encoding="utf-8")
_US = 1_000_000
_REASONS = {0: "ok", 1: "rpm", 2: "tpm", 3: "blocked"}


class RateLimitTimeout(RetryableError):
    """``acquire`` could not get capacity within its timeout; retry the job after ``retry_after``."""

    code = "rate_limit_timeout"


class ReservationTooLarge(FatalError):
    """One request needs more tokens than the model's whole tokens-per-window limit: it can never run."""

    code = "reservation_too_large"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of :meth:`GlobalRateLimiter.reserve`."""

    admitted: bool
    #: 0 when admitted; else seconds until enough capacity frees (or the provider block lifts).
    wait_s: float
    #: Why not admitted: "rpm", "tpm" or "blocked" (provider 429 feedback); "ok" when admitted.
    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    """What the window currently holds, for metrics and dashboards."""

    requests: int
    tokens: int
    blocked_for_s: float


class GlobalRateLimiter:
    """Sliding-window RPM + TPM limiter for one model, shared through Redis by every process.

    ``redis_client`` is a ``redis.Redis`` or a ``redis.asyncio.Redis``. With a sync client every method works
    (the ``*_async`` ones run the Redis call in a thread); with an async client only the ``*_async`` ones do.
    ``rpm`` and ``tpm`` are the limits per ``window_s`` (named for the usual 60 s window).
    """

    def __init__(
        self,
        redis_client: redis.Redis | redis.asyncio.Redis,
        model: str,
        rpm: int,
        tpm: int,
        *,
        window_s: float = 60.0,
        safety_margin_s: float = DEFAULT_SAFETY_MARGIN_S,
        key_prefix: str = "switchyard:rl",
        max_jitter_s: float = DEFAULT_MAX_JITTER_S,
    ) -> None:
        if rpm < 1 or tpm < 1:
            raise ValueError(f"rpm and tpm must be >= 1 (got rpm={rpm}, tpm={tpm})")
        if window_s <= 0 or safety_margin_s < 0 or max_jitter_s < 0:
            raise ValueError("window_s must be > 0; safety_margin_s and max_jitter_s >= 0")
        self.model = model
        self.rpm = rpm
        self.tpm = tpm
        self.window_s = window_s
        self.span_s = window_s + safety_margin_s
        self._span_us = round(self.span_s * _US)
        self._max_jitter_s = max_jitter_s
        self._is_async = isinstance(redis_client, redis.asyncio.Redis)
        self._client = redis_client
        # register_script gives a Script/AsyncScript: EVALSHA, and SCRIPT LOAD + retry on NOSCRIPT
        # (after a Redis restart or failover the script cache is empty).
        self._script: Any = redis_client.register_script(_LUA)
        # One hash tag: all four keys land in the same Redis Cluster slot, as a multi-key script requires.
        base = f"{key_prefix}:{{{model}}}"
        self._keys = [f"{base}:log", f"{base}:tok", f"{base}:total", f"{base}:blocked"]

    # --- sync API ------------------------------------------------------------------------------------------

    def reserve(self, reservation_id: str, tokens: int) -> Verdict:
        """Admit one request charging ``tokens`` now, or say how long until it could be admitted.

        ``reservation_id`` must be unique per HTTP attempt; reserving an id that is still in the window admits
        again without charging twice (so a client retrying after a lost reply is safe).
        """
        self._check_tokens(tokens)
        return self._verdict(self._call("reserve", reservation_id, tokens))

    def settle(self, reservation_id: str, actual_tokens: int) -> bool:
        """Charge the real token count instead of the estimate. False if the reservation already expired."""
        self._check_tokens(actual_tokens, settle=True)
        return bool(self._call("settle", reservation_id, actual_tokens)[0])

    def release(self, reservation_id: str) -> bool:
        """Un-charge a request that never reached the provider (request and tokens). False if unknown."""
        return bool(self._call("release", reservation_id, 0)[0])

    def penalize(self, retry_after_s: float) -> float:
        """Provider said 429: block admissions everywhere for ``retry_after_s`` (never shortens a block).

        Returns the seconds the block now lasts.
        """
        remaining = self._call("penalize", "", self._duration_us(retry_after_s))[0] / _US
        log.warning("rate limiter %s: provider 429, admissions blocked for %.2fs", self.model, remaining)
        return float(remaining)

    def usage(self) -> Usage:
        """Requests and tokens currently counted in the window, and how long a provider block still lasts."""
        return self._usage(self._call("usage", "", 0))

    def acquire(self, reservation_id: str, tokens: int, *, timeout: float | None = None) -> float:
        """Block until admitted; returns the seconds waited.

        Raises :class:`RateLimitTimeout` (retryable, with ``retry_after``) as soon as the next wait would end
        past ``timeout`` -- without sleeping first. ``timeout=None`` waits as long as it takes.
        """
        start = time.monotonic()
        while True:
            verdict = self.reserve(reservation_id, tokens)
            if verdict.admitted:
                return time.monotonic() - start
            time.sleep(self._pause(verdict, start, timeout))

    # --- async API -----------------------------------------------------------------------------------------

    async def reserve_async(self, reservation_id: str, tokens: int) -> Verdict:
        """:meth:`reserve` for an asyncio event loop."""
        self._check_tokens(tokens)
        return self._verdict(await self._acall("reserve", reservation_id, tokens))

    async def settle_async(self, reservation_id: str, actual_tokens: int) -> bool:
        """:meth:`settle` for an asyncio event loop."""
        self._check_tokens(actual_tokens, settle=True)
        return bool((await self._acall("settle", reservation_id, actual_tokens))[0])

    async def release_async(self, reservation_id: str) -> bool:
        """:meth:`release` for an asyncio event loop."""
        return bool((await self._acall("release", reservation_id, 0))[0])

    async def penalize_async(self, retry_after_s: float) -> float:
        """:meth:`penalize` for an asyncio event loop."""
        remaining = (await self._acall("penalize", "", self._duration_us(retry_after_s)))[0] / _US
        log.warning("rate limiter %s: provider 429, admissions blocked for %.2fs", self.model, remaining)
        return float(remaining)

    async def usage_async(self) -> Usage:
        """:meth:`usage` for an asyncio event loop."""
        return self._usage(await self._acall("usage", "", 0))

    async def acquire_async(self, reservation_id: str, tokens: int, *, timeout: float | None = None) -> float:
        """:meth:`acquire` for an asyncio event loop: waits with ``asyncio.sleep``, not blocking the loop."""
        start = time.monotonic()
        while True:
            verdict = await self.reserve_async(reservation_id, tokens)
            if verdict.admitted:
                return time.monotonic() - start
            await asyncio.sleep(self._pause(verdict, start, timeout))

    # --- internals -----------------------------------------------------------------------------------------

    def _args(self, op: str, reservation_id: str, amount: int) -> list[str | int]:
        return [op, self._span_us, self.rpm, self.tpm, reservation_id, amount]

    def _call(self, op: str, reservation_id: str, amount: int) -> list[int]:
        if self._is_async:
            raise TypeError("this limiter has an async Redis client: use the *_async methods")
        return list(self._script(keys=self._keys, args=self._args(op, reservation_id, amount)))

    async def _acall(self, op: str, reservation_id: str, amount: int) -> list[int]:
        if not self._is_async:
            # A sync client would block the event loop for a network round trip; a thread does not.
            return await asyncio.to_thread(self._call, op, reservation_id, amount)
        return list(await self._script(keys=self._keys, args=self._args(op, reservation_id, amount)))

    def _check_tokens(self, tokens: int, *, settle: bool = False) -> None:
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0 (got {tokens})")
        if not settle and tokens > self.tpm:
            raise ReservationTooLarge(
                f"{self.model}: a request of {tokens} tokens exceeds the limit of {self.tpm} tokens "
                f"per {self.window_s:g}s and can never be admitted"
            )

    @staticmethod
    def _duration_us(seconds: float) -> int:
        if seconds < 0:
            raise ValueError(f"retry_after_s must be >= 0 (got {seconds})")
        return round(seconds * _US)

    def _verdict(self, reply: list[int]) -> Verdict:
        admitted, wait_us, reason = (int(x) for x in reply)
        verdict = Verdict(bool(admitted), wait_us / _US, _REASONS[reason])
        if not verdict.admitted:
            log.debug("rate limiter %s: %s, wait %.3fs", self.model, verdict.reason, verdict.wait_s)
        return verdict

    @staticmethod
    def _usage(reply: list[int]) -> Usage:
        requests, tokens, blocked_us = (int(x) for x in reply)
        return Usage(requests, tokens, blocked_us / _US)

    def _pause(self, verdict: Verdict, start: float, timeout: float | None) -> float:
        """How long to sleep before the next try; raises if that would overrun ``timeout``."""
        if timeout is not None and time.monotonic() - start + verdict.wait_s > timeout:
            raise RateLimitTimeout(
                f"{self.model}: no {verdict.reason} capacity within {timeout:g}s "
                f"(next in {verdict.wait_s:.2f}s)",
                retry_after=verdict.wait_s,
            )
        # Waiters told the same instant would all hit Redis together; a few ms of jitter spreads them.
        return verdict.wait_s + random.uniform(0.0, self._max_jitter_s)
