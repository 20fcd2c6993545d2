"""A circuit breaker per provider (or model) whose state every worker process shares through Redis.

closed --(``failure_threshold`` failures within ``window_s``)--> open --(``cooldown_s``)--> half-open
half-open lets exactly one probe through, across all processes --> closed on success, open again on failure.

Only failures that say the provider is unwell count (5xx, timeouts, dropped connections: see
:func:`counts_as_failure`). A 429 is the rate limiter's business (:mod:`workers.ratelimit`), and a fatal
4xx is the request's own fault; neither opens the circuit.

Every transition happens inside one Lua script with the Redis server's clock, so two processes cannot both win
the probe and hosts' clock skew does not matter. The probe is a lease (``probe_timeout_s``): if the process
holding it dies without reporting, another process gets the probe once the lease runs out.

Results are not tied to the request that produced them: a success that was already in flight when the circuit
opened closes a half-open circuit just as the probe's would, and a late failure re-opens it. Both are recent
evidence about the provider; tying outcomes to the probe would mean threading a token through every caller.

Use, around every provider call (``*_async`` twins exist for an event loop)::

    try:
        breaker.check()      # raises CircuitOpenError(retry_after=...) while open
    except CircuitOpenError as exc:
        ...                  # retry later (countdown=exc.retry_after) or fall back to the next model
    try:
        result = call_provider(...)
    except Exception as exc:
        breaker.record(exc)  # counts only if counts_as_failure(exc)
        raise
    breaker.record(None)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from switchyard.errors import CircuitOpenError, ProviderRateLimited, ProviderRetryableError

log = logging.getLogger(__name__)

_US = 1_000_000

# KEYS[1] HASH state ("closed" | "open" | "half_open") and until (server us: end of cooldown or probe lease)
# KEYS[2] ZSET recent failures (member: unique id, score: server us)
# ARGV: op, window_us, cooldown_us, probe_us, threshold, ttl_ms, failure member
# Replies: check -> {verdict 0 reject | 1 pass | 2 pass as the probe, retry_after_us}
#          success / failure -> {state, 1 if this call changed it}; state -> {state, failures, retry_after_us}
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
local window, cooldown, probe = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local threshold, ttl_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'state', 'until')
local state, untl = h[1] or 'closed', tonumber(h[2] or '0')

local function set(s, u)
  redis.call('HSET', KEYS[1], 'state', s, 'until', u)
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end

if op == 'check' then
  if state == 'closed' then return {1, 0} end
  if now < untl then
    -- Open: cooling down. Half-open: the probe is out; ask again no later than one cooldown.
    if state == 'open' then return {0, untl - now} end
    return {0, math.min(untl - now, cooldown)}
  end
  -- Cooldown over, or the previous probe's lease ran out: this caller is the probe.
  set('half_open', now + probe)
  return {2, 0}
elseif op == 'success' then
  if state == 'half_open' then
    redis.call('DEL', KEYS[1], KEYS[2])
    return {'closed', 1}
  end
  return {state, 0}
elseif op == 'failure' then
  if state == 'half_open' then
    set('open', now + cooldown)
    return {'open', 1}
  end
  if state == 'open' then return {'open', 0} end
  redis.call('ZADD', KEYS[2], now, ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[2], ttl_ms)
  if redis.call('ZCARD', KEYS[2]) >= threshold then
    redis.call('DEL', KEYS[2])
    set('open', now + cooldown)
    return {'open', 1}
  end
  return {'closed', 0}
elseif op == 'state' then
  local failures = redis.call('ZCOUNT', KEYS[2], now - window + 1, '+inf')
  if state == 'closed' then return {'closed', failures, 0} end
  -- Past the cooldown (or a dead probe's lease) the next check gets the probe: report it as half-open.
  if now >= untl then return {'half_open', failures, 0} end
  return {state, failures, untl - now}
end
return redis.error_reply('circuit: unknown op ' .. tostring(op))
"""


def counts_as_failure(exc: BaseException) -> bool:
    """Whether an error from a provider call should count towards opening the circuit.

    Retryable provider errors (5xx, 408, timeouts, connection errors, malformed bodies) do; a 429 does not
    (the rate limiter slows down instead), nor does any fatal 4xx or anything that is not a provider error.
    """
    return isinstance(exc, ProviderRetryableError) and not isinstance(exc, ProviderRateLimited)


@dataclass(frozen=True, slots=True)
class CircuitState:
    """A snapshot for metrics and dashboards."""

    state: str  # "closed" | "open" | "half_open"
    failures: int  # failures counted in the current window (closed state)
    retry_after_s: float  # open: until the cooldown ends; half-open with a probe out: until its lease ends


class CircuitBreaker:
    """Shared closed/open/half-open breaker for one provider or model (``name``).

    ``redis_client`` is a ``redis.Redis`` or a ``redis.asyncio.Redis``. With a sync client every method works
    (the ``*_async`` ones run the Redis call in a thread); with an async client only the ``*_async`` ones do.
    """

    def __init__(
        self,
        redis_client: redis.Redis | redis.asyncio.Redis,
        name: str,
        *,
        failure_threshold: int = 5,
        window_s: float = 30.0,
        cooldown_s: float = 30.0,
        probe_timeout_s: float = 120.0,
        key_prefix: str = "switchyard:cb",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1 (got {failure_threshold})")
        if window_s <= 0 or cooldown_s <= 0 or probe_timeout_s <= 0:
            raise ValueError("window_s, cooldown_s and probe_timeout_s must be > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.probe_timeout_s = probe_timeout_s
        self._is_async = isinstance(redis_client, redis.asyncio.Redis)
        # Script/AsyncScript: EVALSHA, with SCRIPT LOAD and a retry on NOSCRIPT (e.g. after a Redis restart).
        self._script: Any = redis_client.register_script(_LUA)
        base = f"{key_prefix}:{{{name}}}"  # one hash tag: both keys in one Redis Cluster slot
        self._keys = [f"{base}:state", f"{base}:failures"]
        # Keys outlive any window, cooldown or lease they hold, then clean themselves up when idle.
        self._ttl_ms = round(2 * (window_s + cooldown_s + probe_timeout_s) * 1000)

    # --- sync API ------------------------------------------------------------------------------------------

    def check(self) -> bool:
        """Let a call through, or raise :class:`CircuitOpenError` with ``retry_after``.

        Returns True when this caller holds the half-open probe: it must report the outcome with
        :meth:`record_success` or :meth:`record_failure` (every caller should, in fact).
        """
        return self._after_check(self._call("check"))

    def record_success(self) -> None:
        """A call succeeded: closes a half-open circuit (an open one stays open until its probe)."""
        self._after_success(self._call("success"))

    def record_failure(self) -> None:
        """A call failed in a way :func:`counts_as_failure` accepts: may open (or re-open) the circuit."""
        self._after_failure(self._call("failure", uuid.uuid4().hex))

    def record(self, exc: BaseException | None) -> None:
        """Report an outcome: None for success, else the exception (ignored unless it counts as a failure)."""
        if exc is None:
            self.record_success()
        elif counts_as_failure(exc):
            self.record_failure()

    def state(self) -> CircuitState:
        """Current state as every process sees it."""
        return self._to_state(self._call("state"))

    # --- async API -----------------------------------------------------------------------------------------

    async def check_async(self) -> bool:
        """:meth:`check` for an asyncio event loop."""
        return self._after_check(await self._acall("check"))

    async def record_success_async(self) -> None:
        """:meth:`record_success` for an asyncio event loop."""
        self._after_success(await self._acall("success"))

    async def record_failure_async(self) -> None:
        """:meth:`record_failure` for an asyncio event loop."""
        self._after_failure(await self._acall("failure", uuid.uuid4().hex))

    async def record_async(self, exc: BaseException | None) -> None:
        """:meth:`record` for an asyncio event loop."""
        if exc is None:
            await self.record_success_async()
        elif counts_as_failure(exc):
            await self.record_failure_async()

    async def state_async(self) -> CircuitState:
        """:meth:`state` for an asyncio event loop."""
        return self._to_state(await self._acall("state"))

    # --- internals -----------------------------------------------------------------------------------------

    def _args(self, op: str, member: str) -> list[str | int]:
        return [
            op,
            round(self.window_s * _US),
            round(self.cooldown_s * _US),
            round(self.probe_timeout_s * _US),
            self.failure_threshold,
            self._ttl_ms,
            member,
        ]

    def _call(self, op: str, member: str = "") -> list[Any]:
        if self._is_async:
            raise TypeError("this breaker has an async Redis client: use the *_async methods")
        return list(self._script(keys=self._keys, args=self._args(op, member)))

    async def _acall(self, op: str, member: str = "") -> list[Any]:
        if not self._is_async:
            # A sync client would block the event loop for a network round trip; a thread does not.
            return await asyncio.to_thread(self._call, op, member)
        return list(await self._script(keys=self._keys, args=self._args(op, member)))

    def _after_check(self, reply: list[Any]) -> bool:
        verdict, retry_us = int(reply[0]), int(reply[1])
        if verdict == 0:
            retry_after = retry_us / _US
            raise CircuitOpenError(
                f"circuit for {self.name} is open; retry in {retry_after:.1f}s", retry_after=retry_after
            )
        if verdict == 2:
            log.info("circuit %s: half-open, this process sends the probe", self.name)
        return verdict == 2

    def _after_success(self, reply: list[Any]) -> None:
        if int(reply[1]):
            log.info("circuit %s: closed, the provider answered again", self.name)

    def _after_failure(self, reply: list[Any]) -> None:
        if int(reply[1]):
            log.warning("circuit %s: open for %gs after provider failures", self.name, self.cooldown_s)

    @staticmethod
    def _to_state(reply: list[Any]) -> CircuitState:
        state, failures, retry_us = reply
        text = state.decode() if isinstance(state, bytes) else str(state)
        return CircuitState(text, int(failures), int(retry_us) / _US)
