"""GlobalRateLimiter against a real Redis, with windows of about a second so waiting is cheap.

Every test uses a key prefix of its own; nothing is ever flushed (other tests share the server).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio

from switchyard.errors import FatalError, RetryableError
from workers.ratelimit import GlobalRateLimiter, RateLimitTimeout, ReservationTooLarge

WINDOW = 0.5
MARGIN = 0.1
SPAN = WINDOW + MARGIN
#: Slack for a Redis round trip and a descheduled test process, on either side of an expected wait.
TOL = 0.08

MakeLimiter = Callable[..., GlobalRateLimiter]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def make_limiter(client: redis.Redis) -> MakeLimiter:
    """Limiters sharing this test's own key prefix: two of them behave like two worker processes."""
    prefix = f"test:rl:{uuid.uuid4().hex}"

    def make(
        rpm: int = 1000,
        tpm: int = 1_000_000,
        *,
        model: str = "gpt-4-turbo",
        window_s: float = WINDOW,
        margin_s: float = MARGIN,
        redis_client: redis.Redis | redis.asyncio.Redis | None = None,
    ) -> GlobalRateLimiter:
        return GlobalRateLimiter(
            redis_client if redis_client is not None else client,
            model,
            rpm,
            tpm,
            window_s=window_s,
            safety_margin_s=margin_s,
            key_prefix=prefix,
        )

    return make


def test_rpm_limit_admits_exactly_rpm_then_waits_for_the_oldest_to_expire(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rpm=3)
    first = time.monotonic()
    assert limiter.reserve("a", 1).admitted
    time.sleep(0.2)  # so the oldest and the second-oldest expire at distinguishable times
    second = time.monotonic()
    assert limiter.reserve("b", 1).admitted
    assert limiter.reserve("c", 1).admitted

    refused = limiter.reserve("d", 1)
    expected = SPAN - (time.monotonic() - first)
    assert not refused.admitted
    assert refused.reason == "rpm"
    assert expected - TOL <= refused.wait_s <= expected + TOL

    time.sleep(refused.wait_s)
    assert limiter.reserve("d", 1).admitted  # the oldest left: exactly one place freed
    refused = limiter.reserve("e", 1)
    assert not refused.admitted
    expected = SPAN - (time.monotonic() - second)
    assert expected - TOL <= refused.wait_s <= expected + TOL
    assert limiter.usage().requests == 3


def test_tpm_limit_waits_until_enough_tokens_expire(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(tpm=100)
    first = time.monotonic()
    assert limiter.reserve("a", 30).admitted
    time.sleep(0.2)
    second = time.monotonic()
    assert limiter.reserve("b", 30).admitted
    assert limiter.reserve("c", 40).admitted

    assert limiter.reserve("small", 1).reason == "tpm"  # full: not even one token fits
    # 50 tokens need 50 freed: "a" (30) is not enough, "a" and "b" (60) are, so wait for "b".
    refused = limiter.reserve("d", 50)
    expected = SPAN - (time.monotonic() - second)
    assert (refused.admitted, refused.reason) == (False, "tpm")
    assert expected - TOL <= refused.wait_s <= expected + TOL
    # 30 tokens need only "a" to leave.
    expected = SPAN - (time.monotonic() - first)
    assert limiter.reserve("e", 30).wait_s == pytest.approx(expected, abs=TOL)


def test_settle_to_fewer_tokens_frees_capacity_at_once(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(tpm=100)
    assert limiter.reserve("a", 90).admitted  # estimate: prompt + max_tokens
    assert not limiter.reserve("b", 50).admitted
    assert limiter.settle("a", 40) is True  # the real usage
    assert limiter.reserve("b", 50).admitted
    assert limiter.usage().tokens == 90
    assert limiter.settle("never-reserved", 10) is False


def test_settle_to_more_tokens_charges_the_real_count(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(tpm=100)
    assert limiter.reserve("a", 10).admitted
    limiter.settle("a", 100)  # the estimate was too low: the provider counted 100
    assert limiter.reserve("b", 1).reason == "tpm"


def test_settle_restamps_the_request_at_its_answer(make_limiter: MakeLimiter) -> None:
    """A slow first call must count from its answer: the provider may have counted it that late."""
    limiter = make_limiter(rpm=1)
    assert limiter.reserve("slow", 10).admitted
    time.sleep(0.5)  # the call reaches the provider late and answers now
    answered = time.monotonic()
    assert limiter.settle("slow", 10)
    refused = limiter.reserve("next", 10)
    assert refused.reason == "rpm"
    # Without the re-stamp the wait would be about SPAN - 0.5.
    assert refused.wait_s == pytest.approx(SPAN - (time.monotonic() - answered), abs=TOL)


def test_release_uncounts_the_request_and_its_tokens(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rpm=1, tpm=100)
    assert limiter.reserve("a", 100).admitted
    assert not limiter.reserve("b", 1).admitted
    assert limiter.release("a") is True  # refused before it was sent: it must not count
    assert limiter.reserve("b", 1).admitted
    usage = limiter.usage()
    assert (usage.requests, usage.tokens) == (1, 1)
    assert limiter.release("a") is False


def test_penalize_blocks_every_process_until_the_provider_says(
    make_limiter: MakeLimiter, redis_url: str
) -> None:
    other_process = redis.Redis.from_url(redis_url)
    try:
        here = make_limiter()
        there = make_limiter(redis_client=other_process)
        elsewhere = make_limiter(model="claude-3-opus", redis_client=other_process)
        assert here.penalize(0.5) == pytest.approx(0.5, abs=TOL)

        refused = there.reserve("a", 1)
        assert (refused.admitted, refused.reason) == (False, "blocked")
        assert 0.5 - TOL <= refused.wait_s <= 0.5
        assert there.penalize(0.1) > 0.3  # a shorter Retry-After never shortens the block
        assert elsewhere.reserve("a", 1).admitted  # another model's limits are its own

        start = time.monotonic()
        there.acquire("a", 1)
        assert 0.5 - TOL <= time.monotonic() - start <= 0.5 + TOL
    finally:
        other_process.close()


def test_unsettled_reservations_expire_with_the_window(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rpm=2, tpm=100, window_s=0.3, margin_s=0.05)
    assert limiter.reserve("crashed-worker-1", 60).admitted  # never settled nor released
    assert limiter.reserve("crashed-worker-2", 40).admitted
    refused = limiter.reserve("next", 100)
    assert not refused.admitted
    time.sleep(refused.wait_s)
    assert limiter.reserve("next", 100).admitted
    usage = limiter.usage()
    assert (usage.requests, usage.tokens) == (1, 100)


def test_reserving_the_same_id_again_charges_once_while_it_counts(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rpm=5, tpm=100, window_s=0.2, margin_s=0.05)
    assert limiter.reserve("a", 60).admitted
    assert limiter.reserve("a", 60).admitted  # e.g. redis-py retried after a lost reply
    usage = limiter.usage()
    assert (usage.requests, usage.tokens) == (1, 60)
    time.sleep(0.25)
    assert limiter.reserve("a", 60).admitted  # the old admission expired: this is a new request
    usage = limiter.usage()
    assert (usage.requests, usage.tokens) == (1, 60)


def test_a_request_larger_than_the_token_limit_fails_at_once(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(tpm=100)
    with pytest.raises(ReservationTooLarge) as caught:
        limiter.acquire("huge", 101, timeout=None)
    assert isinstance(caught.value, FatalError)


def test_acquire_waits_exactly_until_capacity_frees(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rpm=1)
    assert limiter.acquire("a", 1) < TOL
    waited = limiter.acquire("b", 1)
    assert SPAN - TOL <= waited <= SPAN + TOL


def test_acquire_gives_up_without_sleeping_when_the_wait_exceeds_the_timeout(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(rpm=1)
    limiter.acquire("a", 1)
    start = time.monotonic()
    with pytest.raises(RateLimitTimeout) as caught:
        limiter.acquire("b", 1, timeout=0.3)
    assert time.monotonic() - start < TOL
    assert isinstance(caught.value, RetryableError)
    assert caught.value.retry_after == pytest.approx(SPAN, abs=TOL)


@pytest.mark.parametrize("client_kind", ["async", "sync"])
def test_acquire_async_waits_without_blocking_the_event_loop(
    make_limiter: MakeLimiter, redis_url: str, client_kind: str
) -> None:
    async def scenario() -> tuple[list[float], int]:
        aclient = redis.asyncio.Redis.from_url(redis_url) if client_kind == "async" else None
        limiter = make_limiter(rpm=2, window_s=0.4, margin_s=0.05, redis_client=aclient)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        try:
            waits = await asyncio.gather(*(limiter.acquire_async(f"r{i}", 1) for i in range(3)))
        finally:
            tick_task.cancel()
            if aclient is not None:
                await aclient.aclose()
        return sorted(waits), ticks

    waits, ticks = asyncio.run(scenario())
    assert waits[1] < TOL  # two admitted at once
    assert 0.45 - TOL <= waits[2] <= 0.45 + TOL  # the third when the first expires
    assert ticks >= 20  # the loop kept running while the third waited


def test_an_async_client_refuses_the_blocking_methods(make_limiter: MakeLimiter, redis_url: str) -> None:
    aclient = redis.asyncio.Redis.from_url(redis_url)
    limiter = make_limiter(redis_client=aclient)
    with pytest.raises(TypeError):
        limiter.reserve("a", 1)
    asyncio.run(aclient.aclose())
