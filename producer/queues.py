"""Queue depths and estimated waits, read from Redis (kombu keeps one list per queue and priority)."""

from __future__ import annotations

import time

import redis

from celeryconfig import PRIORITY_STEPS
from producer.publish import PRIORITY_SEP
from switchyard.catalog import Catalog

#: Typical completion length used to turn a self-hosted pool's token throughput into jobs per second.
TYPICAL_JOB_TOKENS = 250


def queue_keys(queue: str) -> list[str]:
    return [queue if p == 0 else f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS]


def queue_depths(client: redis.Redis, queues: list[str]) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for q in queues:
        for key in queue_keys(q):
            pipe.llen(key)
    sizes = pipe.execute()
    n = len(PRIORITY_STEPS)
    return {q: int(sum(sizes[i * n : (i + 1) * n])) for i, q in enumerate(queues)}


class QueueMonitor:
    """Estimated queue wait per model, refreshed at most every ``ttl_s`` (routing calls it per job)."""

    def __init__(self, client: redis.Redis, catalog: Catalog, ttl_s: float = 1.0) -> None:
        self.client = client
        self.catalog = catalog
        self.ttl_s = ttl_s
        self._waits: dict[str, float] = {}  # by model, as of the last refresh
        self._at = 0.0

    def drain_rate(self, model: str) -> float:
        """Jobs per second the model's pool can take: its RPM for an API, its throughput for a GPU pool."""
        spec = self.catalog.model(model)
        if spec.rpm:
            return spec.rpm / 60.0
        if spec.capacity_tokens_per_s:
            return spec.capacity_tokens_per_s / TYPICAL_JOB_TOKENS
        return float("inf")

    def wait_s(self, model: str) -> float | None:
        now = time.monotonic()
        if now - self._at > self.ttl_s:
            try:
                depths = queue_depths(self.client, [m.queue for m in self.catalog.models.values()])
            except redis.RedisError:
                return None
            # Every model's wait at once: the router asks per job, up to 10^4 times a second.
            self._waits = {name: depths[m.queue] / self.drain_rate(name) for name, m in self.catalog.models.items()}
            self._at = now
        return self._waits.get(model)
