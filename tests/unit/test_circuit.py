"""CircuitBreaker against a real Redis; each breaker instance with its own client stands for one process.

Every test uses a key prefix of its own; nothing is ever flushed (other tests share the server).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio

from switchyard.errors import (
    CircuitOpenError,
    ProviderFatalError,
    ProviderRateLimited,
    ProviderRetryableError,
    RetryableError,
)
from workers.circuit import CircuitBreaker

COOLDOWN = 0.3
TOL = 0.08

MakeBreaker = Callable[..., CircuitBreaker]


@pytest.fixture
def make_breaker(redis_url: str) -> Iterator[MakeBreaker]:
    """Breakers for one provider, each on a Redis connection of its own, like separate worker processes."""
    prefix = f"test:cb:{uuid.uuid4().hex}"
    clients: list[redis.Redis] = []

    def make(redis_client: redis.asyncio.Redis | None = None, **overrides: float) -> CircuitBreaker:
        client: redis.Redis | redis.asyncio.Redis
        if redis_client is None:
            client = redis.Redis.from_url(redis_url)
            clients.append(client)
        else:
            client = redis_client
        params: dict = {"failure_threshold": 3, "window_s": 5.0, "cooldown_s": COOLDOWN} | overrides
        return CircuitBreaker(client, "openai", key_prefix=prefix, **params)

    yield make
    for client in clients:
        client.close()


def _open(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()


def test_opens_after_threshold_failures_and_rejects_with_retry_after(make_breaker: MakeBreaker) -> None:
    breaker, other = make_breaker(), make_breaker()
    breaker.record_failure()
    other.record_failure()
    assert breaker.check() is False  # two failures: still closed, not a probe
    assert breaker.state().failures == 2

    other.record_failure()
    for process in (breaker, other):
        with pytest.raises(CircuitOpenError) as caught:
            process.check()
        assert isinstance(caught.value, RetryableError)
        assert COOLDOWN - TOL < caught.value.retry_after <= COOLDOWN
    assert breaker.state().state == "open"


def test_failures_spread_wider_than_the_window_do_not_open(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(window_s=0.3)
    breaker.record_failure()
    breaker.record_failure()
    time.sleep(0.35)
    breaker.record_failure()
    assert breaker.check() is False
    assert (breaker.state().state, breaker.state().failures) == ("closed", 1)


def test_half_open_lets_exactly_one_probe_through_across_processes(make_breaker: MakeBreaker) -> None:
    processes = [make_breaker() for _ in range(8)]
    _open(processes[0])
    time.sleep(COOLDOWN)
    assert processes[0].state().state == "half_open"

    start = threading.Barrier(len(processes))
    outcomes: list[str] = []

    def race(breaker: CircuitBreaker) -> None:
        start.wait()
        try:
            outcomes.append("probe" if breaker.check() else "pass")
        except CircuitOpenError as exc:
            assert exc.retry_after is not None and 0 < exc.retry_after <= COOLDOWN
            outcomes.append("rejected")

    threads = [threading.Thread(target=race, args=(b,)) for b in processes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["probe"] + ["rejected"] * 7


def test_probe_success_closes_the_circuit_for_everyone(make_breaker: MakeBreaker) -> None:
    prober, other = make_breaker(), make_breaker()
    _open(prober)
    time.sleep(COOLDOWN)
    assert prober.check() is True
    prober.record_success()
    assert other.check() is False
    assert other.state().state == "closed"
    # Closed again from scratch: the failures that opened it are forgotten.
    other.record_failure()
    assert other.state().failures == 1


def test_probe_failure_reopens_for_another_cooldown(make_breaker: MakeBreaker) -> None:
    prober, other = make_breaker(), make_breaker()
    _open(prober)
    time.sleep(COOLDOWN)
    assert prober.check() is True
    prober.record_failure()
    with pytest.raises(CircuitOpenError) as caught:
        other.check()
    assert COOLDOWN - TOL < caught.value.retry_after <= COOLDOWN
    assert other.state().state == "open"


def test_a_probe_that_never_reports_is_replaced_after_its_lease(make_breaker: MakeBreaker) -> None:
    crashed, other = make_breaker(probe_timeout_s=0.2), make_breaker(probe_timeout_s=0.2)
    _open(crashed)
    time.sleep(COOLDOWN)
    assert crashed.check() is True  # then the process dies without reporting
    with pytest.raises(CircuitOpenError):
        other.check()
    time.sleep(0.2)
    assert other.check() is True


def test_only_provider_health_failures_count(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker()
    rate_limited = ProviderRateLimited("429", provider="openai", status=429, retry_after=1.0)
    rejected = ProviderFatalError("400", provider="openai", status=400)
    for exc in (rate_limited, rejected, ValueError("a bug of ours")) * 3:
        breaker.record(exc)
    breaker.record(None)
    assert breaker.check() is False
    assert breaker.state().failures == 0

    for _ in range(3):
        breaker.record(ProviderRetryableError("503", provider="openai", status=503))
    with pytest.raises(CircuitOpenError):
        breaker.check()


def test_async_breakers_share_state_with_sync_ones(make_breaker: MakeBreaker, redis_url: str) -> None:
    sync_process = make_breaker()

    async def scenario() -> None:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        try:
            breaker = make_breaker(redis_client=aclient)
            for _ in range(3):
                await breaker.record_async(ProviderRetryableError("timeout", provider="openai"))
            with pytest.raises(CircuitOpenError):
                sync_process.check()
            await asyncio.sleep(COOLDOWN)
            assert await breaker.check_async() is True
            with pytest.raises(CircuitOpenError):
                await asyncio.to_thread(sync_process.check)  # the probe is out
            await breaker.record_success_async()
            assert (await breaker.state_async()).state == "closed"
        finally:
            await aclient.aclose()

    asyncio.run(scenario())
    assert sync_process.check() is False
