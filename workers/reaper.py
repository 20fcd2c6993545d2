"""Recovering jobs whose message was lost. Postgres, not Redis, is the record of what must run.

kombu's Redis transport pops a message (BRPOP) and only then records it as unacknowledged, so a worker killed
between the two loses that message; a Redis restart without persistence loses whole queues; a submit killed
between recording and publishing leaves jobs with no message at all. The reaper closes those holes: a job that
has been queued (or running past its lease) for longer than ``orphan_grace_s`` and whose id is in no queue list
and no unacked entry is published again. A duplicate message is harmless: a delivery can claim a job only when
it is queued or its running lease has expired.

Every worker runs it in a background thread; a Redis lock lets one of them do the work per interval.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta

import redis
from sqlalchemy import Engine, and_, func, or_, select

from producer.publish import BulkPublisher, Outgoing
from producer.queues import queue_keys
from schemas.tables import Job
from switchyard.catalog import Catalog

log = logging.getLogger(__name__)

LOCK_KEY = "switchyard:reaper:lock"
#: Queues longer than this are not scanned (a backlog that deep is not losing jobs, it is busy).
MAX_SCAN = 200_000
BATCH = 1000


def _present_ids(client: redis.Redis, catalog: Catalog) -> set[str] | None:
    """Job ids in any queue list or unacked entry; None when the queues are too deep to scan."""
    raw: list[bytes] = []
    for spec in catalog.models.values():
        for key in queue_keys(spec.queue):
            if client.llen(key) > MAX_SCAN:
                return None
            raw.extend(client.lrange(key, 0, -1))
    raw.extend(client.hvals("unacked"))
    found: set[str] = set()
    for item in raw:
        text = item.decode(errors="replace")
        start = text.find('"id":')  # the task id (= job id) sits in the message headers, unencoded
        while start != -1:
            candidate = text[start + 5:].lstrip(' "')[:36]
            found.add(candidate)
            start = text.find('"id":', start + 5)
    return found


def find_orphans(engine: Engine, client: redis.Redis, catalog: Catalog) -> list[tuple[uuid.UUID, str, int]]:
    grace = timedelta(seconds=catalog.orphan_grace_s)
    conditions = [and_(Job.state == "queued", func.coalesce(Job.enqueued_at, Job.created_at) < func.now() - grace)]
    for name, spec in catalog.models.items():
        lease = timedelta(seconds=spec.timeout_s * (1 if spec.self_hosted else 3) + 30)
        conditions.append(and_(Job.state == "running", Job.model == name,
                               Job.claimed_at < func.now() - grace - lease))
    with engine.connect() as conn:
        rows = conn.execute(select(Job.id, Job.model, Job.priority).where(or_(*conditions))
                            .limit(BATCH)).all()
    if not rows:
        return []
    present = _present_ids(client, catalog)
    if present is None:
        return []
    return [(r[0], r[1], r[2]) for r in rows if str(r[0]) not in present]


def reap_once(engine: Engine, client: redis.Redis, catalog: Catalog) -> int:
    """Republish orphaned jobs; the number republished."""
    orphans = find_orphans(engine, client, catalog)
    if orphans:
        BulkPublisher(client).publish(Outgoing(str(i), catalog.model(m).queue, p) for i, m, p in orphans)
        from producer import store

        with engine.begin() as conn:
            store.mark_enqueued(conn, [o[0] for o in orphans])
        log.warning("reaper: republished %s job(s) whose message was lost", len(orphans))
    return len(orphans)


class Reaper(threading.Thread):
    """Background thread: every interval, whoever takes the lock reaps."""

    def __init__(self, engine: Engine, client: redis.Redis, catalog: Catalog) -> None:
        super().__init__(name="switchyard-reaper", daemon=True)
        self.engine, self.client, self.catalog = engine, client, catalog
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = self.catalog.reaper_interval_s
        while not self.stopped.wait(interval):
            try:
                if self.client.set(LOCK_KEY, "1", nx=True, px=int(interval * 1000 * 0.9)):
                    reap_once(self.engine, self.client, self.catalog)
            except Exception as exc:  # the reaper must never take the worker down
                log.warning("reaper failed: %s", exc)

    def stop(self) -> None:
        self.stopped.set()
