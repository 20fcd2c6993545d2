"""kombu's Redis transport, less two per-message costs of the worker's hot path.

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
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = logging.getLogger(__name__)

#: For ``broker_transport``.
TRANSPORT = "workers.broker:Transport"


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: list[str] = []

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
