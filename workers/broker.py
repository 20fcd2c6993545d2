"""kombu's Redis transport, less three per-message costs of the worker's hot path.

Used by ``switchyard worker`` only (``broker_transport``); producers keep kombu's own transport. Same wire
format, same keys, same at-least-once behaviour:

* kombu builds a new ``redis.Redis`` client for every ack and every delivery's unacked record (~50 us each,
  mostly copying its response-callback table). A channel here keeps one, per connection pool: a Redis client
  is thread-safe, and the pipelines made from it are still one per call.
* an ack is a MULTI/ZREM/HDEL/EXEC round trip per message. Acks here are gathered for the rest of the event-loop
  tick and sent as one pipeline (ZREM and HDEL take many members): the worker's group commit
  (workers/groupcommit.py) ends many tasks at once, so their acks arrive together. The in-process bookkeeping
  (prefetch count, what a closing channel hands back) is updated at once, as before; only the removal of the
  Redis unacked entries waits, at most one tick, for a job whose result is already committed. If the process
  dies in between, the broker redelivers that message after the visibility timeout and the claim skips it
  (the job is final): nothing lost, nothing run twice.
* a delivery is a BRPOP round trip (and an epoll registration) plus a MULTI/ZADD/HSET/EXEC round trip that
  records the message as unacked. Here, when the BRPOP returns a message, the rest of that same list's backlog,
  up to the prefetch credit and ``FETCH_MAX``, comes with one ``RPOP key count``, and all their unacked entries
  are written in one pipeline before any of them is handed to Celery: the same entries, written at the same
  point (before the task runs) as kombu writes them one by one. Priority holds: BRPOP returned the
  highest-priority list that had anything, and only that list is drained further.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger(__name__)

#: For ``broker_transport``.
TRANSPORT = "workers.broker:Transport"
#: The most messages one fetch takes (the BRPOP's one included).
FETCH_MAX = 32


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: list[str] = []
        self._recorded: set[str] = set()  # fetched in bulk: unacked entry already in Redis

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self._recorded:
            self._recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # the in-process bookkeeping only
            return
        super().append(message, delivery_tag)

    def record_fetched(self, fetched: list[tuple[str, dict[str, Any]]]) -> None:
        """Write the unacked entries of messages just fetched (raw JSON, parsed) in one round trip: what
        kombu's ``append`` writes per message (index score now, value [payload, exchange, routing key])."""
        now = time.time()
        index: dict[str, float] = {}
        entries: dict[str, str] = {}
        for raw, payload in fetched:
            props = payload["properties"]
            tag, info = props["delivery_tag"], props.get("delivery_info") or {}
            index[tag] = now
            # The payload's own JSON spliced in: the same value as dumps([payload, ex, rk]), without re-encoding.
            entries[tag] = f"[{raw},{json.dumps(info.get('exchange'))},{json.dumps(info.get('routing_key'))}]"
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, index).hset(self.unacked_key, mapping=entries).execute()
        self._recorded.update(index)

    def ack(self, delivery_tag: str) -> None:
        transport = self.channel.connection
        hub = getattr(transport, "hub", None)
        if hub is None or threading.get_ident() != transport.hub_thread:
            super().ack(delivery_tag)  # not on the event loop (or none): at once, as kombu does
            return
        if not self._acks:
            hub.call_soon(self.flush_acks)  # runs after the callbacks of this tick
        self._acks.append(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def flush_acks(self) -> None:
        tags, self._acks = self._acks, []
        if not tags:
            return
        try:
            with self.channel.conn_or_acquire() as client:
                client.pipeline().zrem(self.unacked_index_key, *tags).hdel(self.unacked_key, *tags).execute()
        except Exception as exc:  # noqa: BLE001 - as kombu's ack_log_error: log, the loop goes on
            # The entries stay in the unacked hash: redelivered after the visibility timeout, then skipped.
            log.warning("could not remove %d acked messages from Redis (%s); they will be redelivered and "
                        "skipped", len(tags), exc)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:  # a new pool after a reconnect
            client = self._sync_client = super()._create_client()
        return client

    def _brpop_read(self, **options: Any) -> bool:
        """kombu's ``_brpop_read``, delivering the list's backlog along with the BRPOP's message."""
        try:
            try:
                popped = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # as kombu: the next poll reconnects
                raise
            if not popped:
                raise Empty()
            key, item = popped
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            raws = [bytes_to_str(i) for i in (item, *self._fetch_more(key))]
            fetched = [(raw, loads(raw)) for raw in raws]
            self.qos.record_fetched(fetched)
            for _, payload in fetched:
                self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            flush_reauth = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.6
            if flush_reauth is not None:
                flush_reauth()

    def _fetch_more(self, key: bytes) -> list[bytes]:
        """Up to the prefetch credit (and FETCH_MAX) more messages of the list ``key``, without blocking."""
        credit = self.qos.can_consume_max_estimate()
        more = FETCH_MAX - 1 if credit is None else min(FETCH_MAX, credit) - 1
        if more <= 0 or self.global_keyprefix:  # a key prefix: leave kombu's key handling alone
            return []
        try:
            with self.conn_or_acquire() as client:
                return client.rpop(key, more) or []
        except self.connection_errors as exc:  # the BRPOP's message is still delivered; the rest stay queued
            log.debug("bulk fetch from %r failed: %s", key, exc)
            return []

    def close(self) -> None:
        qos = self._qos
        if qos is not None:
            qos.flush_acks()  # before kombu hands the unacked messages back
        super().close()


class Transport(kombu_redis.Transport):
    Channel = Channel
    hub: Any = None  # the worker's event loop, once registered
    hub_thread: int | None = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self.hub, self.hub_thread = loop, threading.get_ident()
        super().register_with_event_loop(connection, loop)
