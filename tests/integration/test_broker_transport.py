"""The worker's Redis transport (workers/broker.py) against real Redis: acks gathered per event-loop tick."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from workers.broker import Transport

QUEUE = Queue("t", Exchange("t", type="direct"), routing_key="t")


class Hub:
    """Stands in for Celery's event loop: call_soon callbacks run when the test says the tick is over."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], Any]] = []

    def call_soon(self, callback: Callable[[], Any]) -> None:
        self.soon.append(callback)

    def end_tick(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


@pytest.fixture
def conn(clean_redis: str) -> Iterator[Connection]:
    with Connection(clean_redis, transport=Transport) as c:
        yield c


def _deliver(conn: Connection, n: int) -> list[Any]:
    """Publish ``n`` messages and take them unacknowledged (each gets its Redis unacked entry, as in a worker)."""
    channel = conn.default_channel
    producer = conn.Producer(channel)
    for i in range(n):
        producer.publish({"n": i}, exchange=QUEUE.exchange, routing_key="t", declare=[QUEUE])
    bound = QUEUE(channel)
    return [bound.get(no_ack=False) for _ in range(n)]


def _unacked(url: str) -> tuple[int, int]:
    r = redis.Redis.from_url(url)
    return r.hlen("unacked"), r.zcard("unacked_index")


def test_acks_on_the_event_loop_reach_redis_together_at_the_end_of_the_tick(conn: Connection,
                                                                           clean_redis: str) -> None:
    messages = _deliver(conn, 3)
    assert _unacked(clean_redis) == (3, 3)
    hub = Hub()
    conn.transport.hub, conn.transport.hub_thread = hub, threading.get_ident()
    for m in messages:
        m.ack()
    assert conn.default_channel.qos.can_consume()  # the prefetch count is freed at once...
    assert _unacked(clean_redis) == (3, 3) and len(hub.soon) == 1  # ...Redis waits for one flush
    hub.end_tick()
    assert _unacked(clean_redis) == (0, 0)


def test_a_closing_channel_sends_its_gathered_acks_first(conn: Connection, clean_redis: str) -> None:
    [message] = _deliver(conn, 1)
    conn.transport.hub, conn.transport.hub_thread = Hub(), threading.get_ident()
    message.ack()
    conn.default_channel.close()  # a worker shutting down: acked messages are not handed back
    assert _unacked(clean_redis) == (0, 0)
    assert redis.Redis.from_url(clean_redis).llen("t") == 0


def test_acks_off_the_event_loop_are_sent_at_once(conn: Connection, clean_redis: str) -> None:
    [message] = _deliver(conn, 1)
    conn.transport.hub, conn.transport.hub_thread = Hub(), threading.get_ident() + 1
    message.ack()
    assert _unacked(clean_redis) == (0, 0)


def test_one_redis_client_per_channel(conn: Connection) -> None:
    channel = conn.default_channel
    assert channel._create_client() is channel._create_client()


def test_a_backlog_is_fetched_up_to_the_prefetch_credit_each_recorded_as_unacked(conn: Connection,
                                                                                 clean_redis: str) -> None:
    producer = conn.Producer(conn.default_channel)
    for i in range(25):
        producer.publish({"n": i}, exchange=QUEUE.exchange, routing_key="t", declare=[QUEUE])
    got: list[Any] = []
    channel = conn.channel()
    with conn.Consumer([QUEUE], channel=channel, callbacks=[lambda body, message: got.append(body["n"])],
                       prefetch_count=10):
        conn.drain_events(timeout=2)  # one BRPOP read
        assert got == list(range(10))  # in order, and no more than the prefetch credit
        assert _unacked(clean_redis) == (10, 10)  # each recorded before its callback ran
        assert redis.Redis.from_url(clean_redis).llen("t") == 15
    channel.close()  # never acked: kombu hands them back from their unacked entries
    assert _unacked(clean_redis) == (0, 0)
    r = redis.Redis.from_url(clean_redis)
    assert r.llen("t") == 25
    # The restored messages are whole: a plain kombu consumer reads all 25 bodies.
    with Connection(clean_redis) as plain:
        bound = QUEUE(plain.default_channel)
        bodies = sorted(bound.get(no_ack=True).payload["n"] for _ in range(25))
    assert bodies == list(range(25))
