"""Several OS processes hammer one GlobalRateLimiter; a provider's sliding window must never see too much.

Each process loops acquire -> "send" -> settle as fast as the limiter allows and records when its request
would reach the provider (the moment acquire returns) and the real token count it settles. The parent then
replays the arrivals through a provider-style sliding window (``window`` long, no margin) and checks that no
window ever held more than the limit, and that the window was, on average, nearly full.
"""

from __future__ import annotations

import bisect
import multiprocessing
import random
import time
import uuid
from collections.abc import Iterator
from multiprocessing.pool import Pool

import pytest
import redis

from workers.ratelimit import GlobalRateLimiter, RateLimitTimeout

pytestmark = pytest.mark.integration

PROCESSES = 5
MARGIN = 0.1  # covers admission -> recorded arrival on one host; the ceiling is window / (window + MARGIN)

Arrivals = list[tuple[float, int]]  # (time the provider would see the request, real tokens), sorted


def _hammer(redis_url: str, prefix: str, rpm: int, tpm: int, window: float, seed: int) -> Arrivals:
    """One worker process: reserve an estimate, "send", settle the real count.

    The run lasts two spans from the first admission of any process (shared through Redis): the first
    window, then two refills of it. A process slow to spawn therefore cannot shorten it.
    """
    client = redis.Redis.from_url(redis_url)
    limiter = GlobalRateLimiter(
        client, "m", rpm, tpm, window_s=window, safety_margin_s=MARGIN, key_prefix=prefix
    )
    rng = random.Random(seed)
    sent: Arrivals = []
    stop: float | None = None
    while stop is None or time.time() < stop:  # a limiter that never made us wait must not loop forever
        reservation, estimate = f"{seed}:{len(sent)}", rng.randint(50, 150)
        try:
            limiter.acquire(reservation, estimate, timeout=None if stop is None else stop - time.time())
        except RateLimitTimeout:
            break
        sent.append((time.time(), real := rng.randint(estimate // 2, estimate)))
        limiter.settle(reservation, real)
        if stop is None:
            client.set(f"{prefix}:first", sent[0][0], nx=True, ex=60)
            first = float(client.get(f"{prefix}:first") or sent[0][0])
            stop = first + 2 * (window + MARGIN) + 0.1
    client.close()
    return sent


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    # spawn: fresh interpreters, like workers on separate hosts (no connection inherited through fork).
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as p:
        yield p


def _run(pool: Pool, redis_url: str, rpm: int, tpm: int, window: float) -> Arrivals:
    prefix = f"test:rl-proc:{uuid.uuid4().hex}"
    args = [(redis_url, prefix, rpm, tpm, window, seed) for seed in range(PROCESSES)]
    return sorted(a for sent in pool.starmap(_hammer, args) for a in sent)


def _cumulative_tokens(arrivals: Arrivals) -> list[int]:
    cumulative = [0]
    for _, tokens in arrivals:
        cumulative.append(cumulative[-1] + tokens)
    return cumulative


def _worst_window(arrivals: Arrivals, window: float) -> tuple[int, int]:
    """Most requests and most tokens in any [t, t + window): the worst windows start at an arrival."""
    times, cumulative = [t for t, _ in arrivals], _cumulative_tokens(arrivals)
    requests = tokens = 0
    for i, t in enumerate(times):
        j = bisect.bisect_left(times, t + window)
        requests, tokens = max(requests, j - i), max(tokens, cumulative[j] - cumulative[i])
    return requests, tokens


def _mean_in_window(arrivals: Arrivals, window: float) -> tuple[float, float]:
    """Average (requests, tokens) a provider window ending at t held, once the first window has filled.

    t is sampled every 10 ms over whole periods of the limiter (its span): a saturated sliding log refills
    in bursts one span apart, so a partial period would over- or under-weight one burst.
    """
    times, cumulative = [t for t, _ in arrivals], _cumulative_tokens(arrivals)
    span = window + MARGIN
    periods = int((times[-1] - times[0] - window) / span)
    assert periods >= 1, "the run did not last a full window plus a span"
    samples = [times[0] + window + k * 0.01 for k in range(round(periods * span / 0.01))]
    requests = tokens = 0.0
    for t in samples:
        i, j = bisect.bisect_right(times, t - window), bisect.bisect_right(times, t)
        requests += j - i
        tokens += cumulative[j] - cumulative[i]
    return requests / len(samples), tokens / len(samples)


def test_processes_never_exceed_rpm_and_keep_the_window_nearly_full(pool: Pool, redis_url: str) -> None:
    rpm, window = 30, 1.5
    arrivals = _run(pool, redis_url, rpm, 1_000_000, window)
    assert _worst_window(arrivals, window)[0] <= rpm
    # The best possible is window / (window + MARGIN) = 94 %.
    mean_requests, _ = _mean_in_window(arrivals, window)
    assert mean_requests / rpm >= 0.90


def test_processes_never_exceed_tpm_with_settled_real_tokens(pool: Pool, redis_url: str) -> None:
    tpm, window = 3000, 1.0  # ~40 requests of 75 real tokens per window; estimates are up to twice that
    arrivals = _run(pool, redis_url, 10_000, tpm, window)
    assert _worst_window(arrivals, window)[1] <= tpm
    # The best possible is window / (window + MARGIN) = 91 %, less the room an estimate (<= 150) must find.
    _, mean_tokens = _mean_in_window(arrivals, window)
    assert mean_tokens / tpm >= 0.85
