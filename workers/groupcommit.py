"""Group commit for the worker's hot path: the claims and results of many jobs in one transaction.

Every job costs two writes: its claim, then its result + ledger entry + final state. One transaction each cost
about 1 ms of the worker's CPU per job (pool checkout, statement, commit: each a trip through SQLAlchemy and
psycopg), a third of a GPU worker's whole budget. So the task threads hand those two writes to one writer thread
and block until the transaction holding theirs has committed; the writer commits whatever has gathered, as one
statement per kind, every few milliseconds.

What does not change:

* exactly once: every row is still guarded by the job's unique key (results, ledger entries) or by its state
  (claims), so a redelivered job is recorded and billed once;
* ack after commit: a task thread returns, and Celery acks its message, only after the commit that holds its
  write. A worker killed before that loses uncommitted writes together with unacked messages, which the broker
  redelivers;
* errors: a failed batch is retried one job per transaction (the plain ``Recorder`` statements), so an error
  reaches only the job that caused it. A dropped connection reaches every job of the batch, as it would have
  reached each of them alone (the task retries it).

Only self-hosted results are batched: a commercial result also settles the tenant's budget (row locks on the
shared budget periods, which should not be held across other jobs' writes), and commercial workers run a few
jobs a second, where batching buys nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from switchyard.db import is_transient
from workers.recorder import Claim, Outcome, Recorder

log = logging.getLogger(__name__)

# Many jobs per statement: unnest the ids (and each delivery's lease) instead of one UPDATE each.
_CLAIM_MANY = """
UPDATE jobs SET state = 'running', attempts = attempts + 1, claimed_at = now(),
       started_at = coalesce(started_at, now())
FROM unnest(%(ids)s::uuid[], %(leases)s::float8[]) AS c(id, lease_s)
WHERE jobs.id = c.id
  AND (jobs.state = 'queued' OR (jobs.state = 'running' AND jobs.claimed_at < now() - make_interval(secs => c.lease_s)))
RETURNING jobs.id, batch_id, custom_id, model, attempts, request, tenant, contains_pii, route_rule, route_reason,
          prompt_tokens_estimate, enqueued_at, parent_id, chunk_index, now()
"""
# The batch's rows travel as one JSON array: one json.dumps (C) instead of psycopg adapting 23 values a job.
_SUCCEED_MANY = """
WITH r AS (
  SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    job_id uuid, batch_id uuid, tenant text, model text, backend text, request_id text, body jsonb,
    simulated bool, attempt int, provider text, self_hosted bool, route_rule text, input_tokens int,
    output_tokens int, input_usd_per_mtok numeric, output_usd_per_mtok numeric, gpu_seconds float8,
    cost_usd numeric, baseline_usd numeric, queue_wait_ms int, inference_ms int, latency_ms int)
), result AS (
  INSERT INTO results (job_id, model, backend, status_code, request_id, body, simulated, worker, attempt)
  SELECT job_id, model, backend, 200, request_id, body, simulated, %(worker)s, attempt FROM r
  ON CONFLICT (job_id) DO NOTHING RETURNING job_id
), ledger AS (
  INSERT INTO ledger_entries (job_id, batch_id, tenant, model, provider, self_hosted, simulated, route_rule,
    input_tokens, output_tokens, input_usd_per_mtok, output_usd_per_mtok, gpu_seconds, cost_usd, baseline_usd,
    queue_wait_ms, inference_ms, latency_ms, succeeded)
  SELECT r.job_id, batch_id, tenant, model, provider, self_hosted, simulated, route_rule, input_tokens,
    output_tokens, input_usd_per_mtok, output_usd_per_mtok, gpu_seconds, cost_usd, baseline_usd, queue_wait_ms,
    inference_ms, latency_ms, true
  FROM r JOIN result ON result.job_id = r.job_id
  ON CONFLICT (job_id) DO NOTHING
), job AS (
  UPDATE jobs SET state = 'succeeded', finished_at = now(), error_code = NULL, error_message = NULL
  WHERE id IN (SELECT job_id FROM result)
)
SELECT job_id FROM result
"""


@dataclass(slots=True)
class _Write:
    job_id: uuid.UUID
    due: float  # time.monotonic() by which it should be committed
    lease_s: float = 0.0  # claims
    claim: Claim | None = None  # results
    outcome: Outcome | None = None
    future: Future[Any] = field(default_factory=Future)


class BatchedRecorder(Recorder):
    """A Recorder whose ``claim`` and self-hosted ``succeed`` are group-committed (see the module docstring).

    ``claim_linger_s`` / ``succeed_linger_s``: how long a write may wait for others to join its transaction.
    A claim delays the job's start, so it waits little; a result only delays its message's ack and its
    visibility in Postgres (its latency_ms is measured before), so it waits longer and carries more jobs.
    Before ``start`` and after ``stop`` every write goes straight to the database, one transaction each.
    """

    def __init__(self, engine: Engine, worker_name: str, *, claim_linger_s: float = 0.005,
                 succeed_linger_s: float = 0.05, max_batch: int = 256) -> None:
        super().__init__(engine, worker_name)
        self.claim_linger_s = claim_linger_s
        self.succeed_linger_s = succeed_linger_s
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._claims: list[_Write] = []
        self._results: list[_Write] = []
        self._due = float("inf")  # earliest due of what is pending
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None  # used by the writer thread only
        self._stopping = False
        self.batches = 0  # transactions committed by the writer (for tests and the debug log)
        self.written = 0  # writes they carried

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is pending, then stop; later writes go straight to the database."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread.join(timeout)
        self._thread = None
        log.info("recorder: %s claims and results written in %s transactions", self.written, self.batches)

    # --- the Recorder interface -----------------------------------------------------------------------

    def claim(self, job_id: uuid.UUID, lease_s: float) -> Claim | None:
        write = _Write(job_id, time.monotonic() + self.claim_linger_s, lease_s=lease_s)
        if not self._enqueue(write, claim=True):
            return super().claim(job_id, lease_s)
        return write.future.result()

    def succeed(self, claim: Claim, out: Outcome) -> bool:
        if not out.self_hosted:
            return super().succeed(claim, out)
        write = _Write(claim.job_id, time.monotonic() + self.succeed_linger_s, claim=claim, outcome=out)
        if not self._enqueue(write, claim=False):
            return super().succeed(claim, out)
        return write.future.result()

    # --- the writer thread ----------------------------------------------------------------------------

    def _enqueue(self, write: _Write, *, claim: bool) -> bool:
        """Queue ``write`` for the writer; False when the writer is not running (write it directly)."""
        with self._cond:
            if self._thread is None or self._stopping:
                return False
            pending = self._claims if claim else self._results  # under the lock, like every use of them
            pending.append(write)
            # Wake the writer only when its plans change: a new earliest due, or a full batch.
            if write.due < self._due or len(pending) == self.max_batch:
                self._due = min(self._due, write.due)
                self._cond.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    full = len(self._claims) >= self.max_batch or len(self._results) >= self.max_batch
                    if self._stopping or full or time.monotonic() >= self._due:
                        break
                    self._cond.wait(None if self._due == float("inf") else self._due - time.monotonic())
                claims, results = self._claims[:self.max_batch], self._results[:self.max_batch]
                del self._claims[:self.max_batch], self._results[:self.max_batch]
                self._due = min((w.due for w in (*self._claims, *self._results)), default=float("inf"))
                if not claims and not results and self._stopping:
                    self._drop_connection()
                    return
            if claims or results:
                self._commit(claims, results)

    def _commit(self, claims: list[_Write], results: list[_Write]) -> None:
        # One write per job per statement: a second delivery of the same job waits for the next transaction,
        # so that it sees the first one's effect exactly as it would have one transaction each.
        claims, later_claims = _first_per_job(claims)
        results, later_results = _first_per_job(results)
        if later_claims or later_results:
            with self._cond:
                self._claims[:0], self._results[:0] = later_claims, later_results
                self._due = time.monotonic()
        try:
            conn = self._connection()
            with conn.begin():
                recorded = self._succeed_many(conn, results) if results else set()
                claimed = self._claim_many(conn, claims) if claims else {}
        except DBAPIError as exc:
            if is_transient(exc):
                # The database is down or dropped the connection: writing the jobs one at a time would fail
                # the same way. Their tasks retry (workers/tasks.py); the next batch connects afresh.
                log.warning("database unavailable (%s): %s claims and %s results will be retried",
                            exc.__class__.__name__, len(claims), len(results))
                self._drop_connection()
                for w in (*claims, *results):
                    w.future.set_exception(exc)
                return
            log.warning("batched write of %s claims and %s results failed (%s); writing them one at a time",
                        len(claims), len(results), exc.__class__.__name__)
            self._one_by_one(claims, results)
            return
        except BaseException as exc:  # never leave a task thread waiting for ever
            log.exception("batched write failed; writing one at a time")
            self._one_by_one(claims, results)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.written += len(claims) + len(results)
        for w in claims:
            w.future.set_result(claimed.get(w.job_id))
        for w in results:
            w.future.set_result(w.job_id in recorded)

    def _connection(self) -> Connection:
        """The writer's own connection, kept between transactions: a pool checkout and return per transaction
        cost more worker CPU than the transaction itself (~110 against ~40 us at a few jobs per batch)."""
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is already broken; the next batch connects afresh
                log.debug("closing the writer's broken connection failed", exc_info=True)

    def _claim_many(self, conn: Any, claims: list[_Write]) -> dict[uuid.UUID, Claim]:
        rows = conn.exec_driver_sql(_CLAIM_MANY, {"ids": [w.job_id for w in claims],
                                                   "leases": [w.lease_s for w in claims]}).all()
        return {row[0]: Claim(*row) for row in rows}

    def _succeed_many(self, conn: Any, results: list[_Write]) -> set[uuid.UUID]:
        rows = [_row(w.claim, w.outcome) for w in results if w.claim is not None and w.outcome is not None]
        params = {"rows": json.dumps(rows, default=str, separators=(",", ":")), "worker": self.worker_name}
        return {row[0] for row in conn.exec_driver_sql(_SUCCEED_MANY, params).all()}

    def _one_by_one(self, claims: list[_Write], results: list[_Write]) -> None:
        for w in claims:
            _settle(w.future, lambda w=w: Recorder.claim(self, w.job_id, w.lease_s))
        for w in results:
            assert w.claim is not None and w.outcome is not None
            _settle(w.future, lambda w=w: Recorder.succeed(self, w.claim, w.outcome))


def _first_per_job(writes: list[_Write]) -> tuple[list[_Write], list[_Write]]:
    seen: set[uuid.UUID] = set()
    first: list[_Write] = []
    later: list[_Write] = []
    for w in writes:
        (later if w.job_id in seen else first).append(w)
        seen.add(w.job_id)
    return first, later


def _settle(future: Future[Any], call: Callable[[], Any]) -> None:
    try:
        future.set_result(call())
    except BaseException as exc:
        future.set_exception(exc)


def _row(claim: Claim, out: Outcome) -> dict[str, Any]:
    """One element of _SUCCEED_MANY's JSON array (UUIDs and Decimals become strings: exact, cast back in SQL)."""
    return {
        "job_id": claim.job_id, "batch_id": claim.batch_id, "tenant": claim.tenant, "model": claim.model,
        "backend": out.backend, "request_id": out.request_id, "body": out.body, "simulated": out.simulated,
        "attempt": claim.attempts, "provider": out.provider, "self_hosted": out.self_hosted,
        "route_rule": claim.route_rule, "input_tokens": out.input_tokens, "output_tokens": out.output_tokens,
        "input_usd_per_mtok": out.input_usd_per_mtok, "output_usd_per_mtok": out.output_usd_per_mtok,
        "gpu_seconds": out.gpu_seconds, "cost_usd": out.cost_usd, "baseline_usd": out.baseline_usd,
        "queue_wait_ms": out.queue_wait_ms, "inference_ms": out.inference_ms, "latency_ms": out.latency_ms,
    }
