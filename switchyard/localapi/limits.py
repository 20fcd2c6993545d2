"""A sliding-window RPM/TPM limiter, as the providers enforce: the local servers answer 429 beyond it."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# --- sliding-window RPM/TPM limiter ----------------------------------------------------------------------


WINDOW_S = 60.0  # the providers' rate-limit window


@dataclass(frozen=True, slots=True)
class LimitSnapshot:
    requests_limit: int | None
    requests_remaining: int | None
    requests_reset_s: float  # until the oldest admitted request leaves the window
    tokens_limit: int | None
    tokens_remaining: int | None
    tokens_reset_s: float


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    snapshot: LimitSnapshot
    retry_after_s: float = 0.0
    exhausted: str | None = None  # "requests" | "tokens"


class SlidingWindowLimiter:
    """RPM and TPM over a sliding window; a request costs its prompt + completion tokens when it arrives.

    Rejected requests do not consume the window, so a client that honours Retry-After gets in on time.
    """

    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0
        self._window, self._clock = window_s, clock
        self.rpm, self.tpm = rpm, tpm

    def configure(self, rpm: int | None, tpm: int | None) -> None:
        with self._lock:
            self.rpm, self.tpm = rpm, tpm

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._tokens = 0

    def admit(self, tokens: int) -> Admission:
        with self._lock:
            now = self._clock()
            self._expire(now)
            wait_r = self._wait_requests(now)
            wait_t = self._wait_tokens(now, tokens)
            if wait_r > 0 or wait_t > 0:
                kind = "requests" if wait_r >= wait_t else "tokens"
                return Admission(False, self._snapshot(now), max(wait_r, wait_t), kind)
            self._events.append((now, tokens))
            self._tokens += tokens
            return Admission(True, self._snapshot(now))

    def snapshot(self) -> LimitSnapshot:
        with self._lock:
            now = self._clock()
            self._expire(now)
            return self._snapshot(now)

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self._window:
            self._tokens -= self._events.popleft()[1]

    def _wait_requests(self, now: float) -> float:
        if self.rpm is None or len(self._events) < self.rpm:
            return 0.0
        if self.rpm <= 0:
            return self._window
        # len - rpm + 1 admitted requests must leave the window; the last of them is at index len - rpm.
        return self._events[len(self._events) - self.rpm][0] + self._window - now

    def _wait_tokens(self, now: float, tokens: int) -> float:
        if self.tpm is None or self._tokens + tokens <= self.tpm:
            return 0.0
        if tokens > self.tpm:
            return self._window  # can never fit; the real APIs answer 429 here too
        freed = 0
        for t, n in self._events:
            freed += n
            if self._tokens - freed + tokens <= self.tpm:
                return t + self._window - now
        return self._window

    def _snapshot(self, now: float) -> LimitSnapshot:
        reset = self._events[0][0] + self._window - now if self._events else 0.0
        return LimitSnapshot(
            self.rpm,
            None if self.rpm is None else max(0, self.rpm - len(self._events)),
            reset,
            self.tpm,
            None if self.tpm is None else max(0, self.tpm - self._tokens),
            reset,
        )
