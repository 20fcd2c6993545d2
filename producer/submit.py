"""The submission pipeline: classify, record in Postgres, publish in bulk; idempotent per custom_id.

Order per chunk: insert the jobs (ON CONFLICT DO NOTHING: a resubmitted custom_id is skipped) and, in the same
transaction, list them in their batch's ``unpublished``; publish them; take them off the list. A submit
interrupted before publishing leaves them listed, and the next run publishes them; one interrupted between
publish and release re-publishes those few (the worker skips a job that is not queued any more). Nothing is
lost, and a finished job never runs twice.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import redis
from sqlalchemy import Engine

from producer import store
from producer.chunking import SplitPlan, plan_split
from producer.classify_pool import MIN_JOBS_FOR_POOL, ClassifierPool
from producer.publish import BulkPublisher, Outgoing
from producer.router import Router, Signals
from schemas.jobs import InferenceJob
from schemas.routing import RouteDecision
from switchyard.catalog import Catalog
from switchyard.tokens import estimate_messages_tokens

log = logging.getLogger(__name__)

#: Chunks recorded at once (see Submitter._submit_chunks).
WRITERS = 2
#: custom_ids named in the warning about changed jobs, at most.
CHANGED_EXAMPLES = 5
#: Chunks being classified in the pool while the submitter routes an earlier one (see Submitter._decided).
CLASSIFY_AHEAD = 3


@dataclass
class SubmitReport:
    batch_id: uuid.UUID
    batch: str  # the batch name (what status/results take)
    submitted: int = 0  # new jobs enqueued now
    skipped: int = 0  # already recorded in this batch (resubmission)
    republished: int = 0  # recorded earlier but never enqueued (an interrupted submit)
    changed: int = 0  # of the skipped: the batch holds a different job under that custom_id (not resubmitted)
    changed_examples: list[str] = field(default_factory=list)  # a few of their custom_ids, to name them

    def changed_warning(self) -> str | None:
        """What to tell the user about ``changed`` jobs, or None when there are none."""
        if not self.changed:
            return None
        more = ", ..." if self.changed > len(self.changed_examples) else ""
        return (f"{self.changed} job(s) differ from what batch {self.batch} holds under their custom_id and were "
                f"not resubmitted ({', '.join(self.changed_examples)}{more}); submit them under a new batch name "
                "to run them as they are now")


@contextmanager
def bulk_mode() -> Iterator[None]:
    """Interpreter settings for the length of a bulk submission.

    * Only the youngest generation of the cyclic garbage collector, and rarely. A submission allocates millions
      of objects that live until it ends (every validated job, for the Python client); each time the default
      thresholds trigger an older-generation collection, the collector walks them all again: a quarter of the
      submitting process's CPU (bench/enqueue.py: 80 -> 60 us per job). Jobs, rows and messages hold no
      reference cycles (reference counting frees them, so streaming a file stays in bounded memory); young
      collections still reclaim the odd cycle that dies young, the rest waits for the first full collection.
    * A GIL switch interval of 0.5 ms instead of 5: the threads that feed the classifier processes and the
      database writers wait for the GIL behind the thread that reads and routes; handing it over sooner keeps
      them busy (bench/submit_file.py: ~8.4k -> ~9.2k jobs/s, noisy).
    """
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(max(thresholds[0], 50_000), 1_000_000_000, 1_000_000_000)
    sys.setswitchinterval(min(interval, 0.0005))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)


def _chunks(items: Iterable[tuple[int, InferenceJob]], size: int) -> Iterator[list[tuple[int, InferenceJob]]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Submitter:
    def __init__(
        self,
        catalog: Catalog,
        engine: Engine,
        redis_client: redis.Redis,
        router: Router,
        *,
        chunk: int = 2000,
        processes: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.engine = engine
        self.publisher = BulkPublisher(redis_client)
        self.router = router
        self.chunk = chunk
        self.processes = processes
        self._report_lock = threading.Lock()

    def _publish(self, batch_id: uuid.UUID, rows: list[tuple[str, str, int]], leftovers: bool = False) -> None:
        if not rows:
            return
        self.publisher.publish(Outgoing(str(i), self.catalog.model(m).queue, p) for i, m, p in rows)
        with self.engine.begin() as conn:
            ids = [r[0] for r in rows]
            store.release_unpublished(conn, batch_id, ids)
            if leftovers:
                store.mark_enqueued(conn, ids)  # rows recorded before enqueued_at was set on insert

    def _split_plan(self, row: dict[str, Any], decision: RouteDecision) -> SplitPlan | None:
        """A plan of parts when the prompt exceeds the routed model's context and the job allows splitting."""
        spec = self.catalog.model(decision.model)
        request = row["request"]
        if not request.get("split", True):
            return None  # the worker refuses it with context_length_exceeded, as the user asked
        need = decision.prompt_tokens + min(int(request["max_tokens"]), spec.max_output_tokens)
        if need <= spec.context_window:
            return None
        plan = plan_split(request["messages"], spec.context_window, int(request["max_tokens"]))
        return plan if len(plan.parts) > 1 else None

    def submit(
        self,
        jobs: Iterable[tuple[int, InferenceJob]],
        batch: str,
        source: str | None = None,
        progress: Callable[[int], None] | None = None,
        size_hint: int | None = None,
        pool: ClassifierPool | None = None,
        ahead: Sequence[Callable[[], list[Any]]] = (),
    ) -> SubmitReport:
        """Submit ``jobs``; ``size_hint`` (the number of jobs, when known) lets a big submission classify on
        every core. ``pool``: the caller's classifier pool, which it closes; ``ahead``: classifications the
        caller already started on it, one per chunk of ``self.chunk`` jobs, in order."""
        batch_id = store.ensure_batch(self.engine, batch, source)
        report = SubmitReport(batch_id=batch_id, batch=batch)
        with self.engine.connect() as conn:
            leftovers = store.unpublished(conn, batch_id)
        if leftovers:
            log.info("batch %s: publishing %s jobs recorded by an interrupted submit", batch, len(leftovers))
            self._publish(batch_id, leftovers, leftovers=True)
            report.republished = len(leftovers)
        own = pool is None
        if own:
            pool = self.pool_for(size_hint)
        try:
            self._submit_chunks(jobs, batch_id, report, pool, progress, ahead)
        finally:
            if own and pool is not None:
                pool.close()
        return report

    def pool_for(self, size_hint: int | None) -> ClassifierPool | None:
        """A classifier pool for a submission of this many jobs, or None to classify inline (small ones)."""
        return ClassifierPool(self.processes) if (size_hint or 0) >= MIN_JOBS_FOR_POOL else None

    def _decided(
        self,
        chunks: Iterable[list[tuple[int, InferenceJob]]],
        pool: ClassifierPool | None,
        ahead: deque[Callable[[], list[Any]]],
    ) -> Iterator[tuple[list[tuple[int, InferenceJob]], list[RouteDecision]]]:
        """Each chunk with its routing decisions; with a pool, the next CLASSIFY_AHEAD chunks are classified
        meanwhile (one is not enough: the classifier processes would wait while this thread reads and routes)."""
        if pool is None:
            for chunk in chunks:
                yield chunk, [self.router.route(job) for _, job in chunk]
            return
        inflight: deque[tuple[list[tuple[int, InferenceJob]], Callable[[], list[Any]]]] = deque()
        for chunk in chunks:
            # A chunk whose classification began while the input was being validated, or one to start now.
            started = ahead.popleft() if ahead else pool.start([(job.text, job.max_tokens) for _, job in chunk])
            inflight.append((chunk, started))
            if len(inflight) > CLASSIFY_AHEAD:
                done = inflight.popleft()
                yield done[0], self._decide(*done)
        while inflight:
            done = inflight.popleft()
            yield done[0], self._decide(*done)

    def _decide(self, chunk: list[tuple[int, InferenceJob]], reads: Callable[[], list[Any]]) -> list[RouteDecision]:
        return [
            self.router.decide(job, Signals(r[0], r[1], r[2], r[3], estimate_messages_tokens(job.messages_as_dicts())))
            for (_, job), r in zip(chunk, reads(), strict=True)
        ]

    def _submit_chunks(
        self,
        jobs: Iterable[tuple[int, InferenceJob]],
        batch_id: uuid.UUID,
        report: SubmitReport,
        pool: ClassifierPool | None,
        progress: Callable[[int], None] | None,
        ahead: Sequence[Callable[[], list[Any]]] = (),
    ) -> None:
        """Two stages: this thread routes a chunk and formats its rows while writer threads record earlier
        chunks and publish them, each chunk in its own transaction on its own connection. PostgreSQL's work on
        a chunk (parsing, indexing, logging 2,000 rows) takes longer than routing one, so WRITERS chunks are
        recorded at once, on as many server processes; they commit in any order (each job's place in its
        batch is its seq, and a resumed submit finds whatever one left unpublished)."""
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="submit-writer") as writer:
            pending: deque[Future[None]] = deque()
            for chunk, decisions in self._decided(_chunks(jobs, self.chunk), pool, deque(ahead)):
                prepared = self._prepare(batch_id, chunk, decisions)
                if len(pending) == WRITERS:
                    pending.popleft().result()  # a writer's error surfaces here; no chunk after it starts
                pending.append(writer.submit(self._record, batch_id, prepared, report, progress, len(chunk)))
            while pending:
                pending.popleft().result()

    def _prepare(
        self, batch_id: uuid.UUID, chunk: list[tuple[int, InferenceJob]], decisions: list[RouteDecision]
    ) -> _Prepared:
        rows: list[dict[str, Any]] = []
        splits: dict[str, SplitPlan] = {}  # by job id, as insert_jobs returns it
        ids, batch_text = store.new_job_ids(len(chunk)), str(batch_id)
        for (seq, job), decision, job_id in zip(chunk, decisions, ids, strict=True):
            row = store.job_row(batch_text, seq, job, decision, self.catalog, job_id)
            plan = self._split_plan(row, decision)
            if plan is not None:
                # The parent never runs itself: its parts do, then a combining job.
                row.update(state="running", chunk_count=len(plan.parts))
                row["request"]["task_head"] = plan.task
                splits[job_id] = plan
            rows.append(row)
        return _Prepared(rows, store.copy_block(rows), splits)

    def _record(
        self,
        batch_id: uuid.UUID,
        prepared: _Prepared,
        report: SubmitReport,
        progress: Callable[[int], None] | None,
        size: int,
    ) -> None:
        rows, splits = prepared.rows, prepared.splits
        with self.engine.begin() as conn:
            inserted = store.insert_jobs(conn, rows, prepared.block)
            store.add_batch_total(conn, batch_id, len(inserted))
            new_ids = {i[0] for i in inserted} if splits else set()
            parts = [
                part
                for r in rows
                if r["id"] in splits and r["id"] in new_ids
                for part in store.part_rows(r, splits[r["id"]])
            ]
            inserted_parts = store.insert_jobs(conn, parts)
            # A split document's parent never goes to the broker (its parts do): nothing to hold for it.
            outgoing = [i for i in inserted if i[0] not in splits] + inserted_parts
            store.hold_unpublished(conn, batch_id, [i[0] for i in outgoing])
            if len(inserted) < len(rows):
                ids = {i[0] for i in inserted}
                changed = store.differing(conn, batch_id, [r for r in rows if r["id"] not in ids])
            else:
                changed = []
        self._publish(batch_id, outgoing)
        with self._report_lock:  # writers finish concurrently
            report.submitted += len(inserted)
            report.skipped += len(rows) - len(inserted)
            report.changed += len(changed)
            report.changed_examples.extend(changed[: max(0, CHANGED_EXAMPLES - len(report.changed_examples))])
        if progress is not None:
            progress(size)


@dataclass(slots=True)
class _Prepared:
    """A chunk ready for the writer: its rows, the same rows in COPY format, and split plans by job id."""

    rows: list[dict[str, Any]]
    block: str
    splits: dict[str, SplitPlan]
