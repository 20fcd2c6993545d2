"""Worker-side writes to Postgres. Every write is idempotent under redelivery.

``claim`` marks a delivery and counts it (the attempt counter that stops crash loops, since Redis redeliveries
carry no count). ``succeed`` writes the result, the ledger entry, the job's final state and the budget
settlement in one transaction, each insert guarded by the job's unique key, so a second delivery of a finished
job changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from schemas.tables import DeadLetter, Job, Result
from switchyard.budget import Budgets


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivered job, as the worker needs it."""

    job_id: uuid.UUID
    batch_id: uuid.UUID
    custom_id: str
    model: str
    attempts: int
    request: dict[str, Any]
    tenant: str | None
    contains_pii: bool
    route_rule: str
    route_reason: str
    prompt_tokens_estimate: int
    enqueued_at: datetime | None
    parent_id: uuid.UUID | None
    chunk_index: int | None
    claimed_at: datetime  # database clock, like enqueued_at


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished inference, ready to record."""

    body: dict[str, Any]  # OpenAI chat.completion
    request_id: str
    backend: str
    simulated: bool
    input_tokens: int
    output_tokens: int
    queue_wait_ms: int
    inference_ms: int
    latency_ms: int
    cost_usd: Decimal
    baseline_usd: Decimal
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    gpu_seconds: float
    provider: str
    self_hosted: bool


# Plain SQL, prepared once: SQLAlchemy's statement building cost more CPU per job than the database did.
_CLAIM = """
UPDATE jobs SET state = 'running', attempts = attempts + 1, claimed_at = now(),
       started_at = coalesce(started_at, now())
WHERE id = %(id)s AND (state = 'queued' OR (state = 'running' AND claimed_at < now() - %(lease)s))
RETURNING id, batch_id, custom_id, model, attempts, request, tenant, contains_pii, route_rule, route_reason,
          prompt_tokens_estimate, enqueued_at, parent_id, chunk_index, now()
"""
_SUCCEED = """
WITH result AS (
  INSERT INTO results (job_id, model, backend, status_code, request_id, body, simulated, worker, attempt)
  VALUES (%(job_id)s, %(model)s, %(backend)s, 200, %(request_id)s, %(body)s, %(simulated)s, %(worker)s,
          %(attempt)s)
  ON CONFLICT (job_id) DO NOTHING RETURNING job_id
), ledger AS (
  INSERT INTO ledger_entries (job_id, batch_id, tenant, model, provider, self_hosted, simulated, route_rule,
    input_tokens, output_tokens, input_usd_per_mtok, output_usd_per_mtok, gpu_seconds, cost_usd, baseline_usd,
    queue_wait_ms, inference_ms, latency_ms, succeeded)
  SELECT job_id, %(batch_id)s, %(tenant)s, %(model)s, %(provider)s, %(self_hosted)s, %(simulated)s,
    %(route_rule)s, %(input_tokens)s, %(output_tokens)s, %(input_usd_per_mtok)s, %(output_usd_per_mtok)s,
    %(gpu_seconds)s, %(cost_usd)s, %(baseline_usd)s, %(queue_wait_ms)s, %(inference_ms)s, %(latency_ms)s, true
  FROM result
  ON CONFLICT (job_id) DO NOTHING
), job AS (
  UPDATE jobs SET state = 'succeeded', finished_at = now(), error_code = NULL, error_message = NULL
  WHERE id IN (SELECT job_id FROM result)
)
SELECT job_id FROM result
"""


class Recorder:
    def __init__(self, engine: Engine, worker_name: str) -> None:
        self.engine = engine
        self.worker_name = worker_name

    def claim(self, job_id: uuid.UUID, lease_s: float) -> Claim | None:
        """Count this delivery and mark the job running; None when another delivery owns it or it is final.

        A job already running is taken over only when its lease (the model's timeout, with a margin) has
        passed: its worker died. A duplicate message for a job that is running fine is skipped.
        """
        with self.engine.begin() as conn:
            row = conn.exec_driver_sql(_CLAIM, {"id": job_id, "lease": timedelta(seconds=lease_s)}).first()
        return Claim(*row) if row else None

    def succeed(self, claim: Claim, out: Outcome) -> bool:
        """Record the result, ledger entry and final state once. False if another delivery got there first.

        One statement, one round trip (this runs for every job on the GPU workers' hot path); each insert is
        guarded by the job's unique key, so a redelivered job changes nothing.
        """
        params = {
            "job_id": claim.job_id, "batch_id": claim.batch_id, "tenant": claim.tenant, "model": claim.model,
            "backend": out.backend, "request_id": out.request_id, "body": Jsonb(out.body),
            "simulated": out.simulated, "worker": self.worker_name, "attempt": claim.attempts,
            "provider": out.provider, "self_hosted": out.self_hosted, "route_rule": claim.route_rule,
            "input_tokens": out.input_tokens, "output_tokens": out.output_tokens,
            "input_usd_per_mtok": out.input_usd_per_mtok, "output_usd_per_mtok": out.output_usd_per_mtok,
            "gpu_seconds": out.gpu_seconds, "cost_usd": out.cost_usd, "baseline_usd": out.baseline_usd,
            "queue_wait_ms": out.queue_wait_ms, "inference_ms": out.inference_ms, "latency_ms": out.latency_ms,
        }
        with self.engine.begin() as conn:
            recorded = conn.exec_driver_sql(_SUCCEED, params).first() is not None
            if recorded and not out.self_hosted:
                Budgets.settle(conn, claim.job_id, out.cost_usd)  # only commercial calls hold budget
        return recorded

    def fail(self, claim: Claim, code: str, message: str, *, backend: str, dead: bool = False,
             payload: dict[str, Any] | None = None) -> None:
        """Final failure: a failed result (the error the user sees) and a dead-letter row, once."""
        state = "dead" if dead else "failed"
        with self.engine.begin() as conn:
            conn.execute(insert(Result).values(
                job_id=claim.job_id, model=claim.model, backend=backend, status_code=500, request_id="",
                body=None, error_code=code, error_message=message[:4000], simulated=False,
                worker=self.worker_name, attempt=claim.attempts,
            ).on_conflict_do_nothing(index_elements=[Result.job_id]))
            conn.execute(insert(DeadLetter).values(
                job_id=claim.job_id, model=claim.model, reason_code=code, reason=message[:4000],
                attempts=claim.attempts, payload=payload or {"job_id": str(claim.job_id)},
            ).on_conflict_do_nothing(index_elements=[DeadLetter.job_id]))
            conn.execute(update(Job).where(Job.id == claim.job_id, Job.state.in_(("queued", "running")))
                         .values(state=state, finished_at=func.now(), error_code=code,
                                 error_message=message[:4000]))

    def requeue(self, job_id: uuid.UUID, *, model: str | None = None, rule: str | None = None,
                reason: str | None = None) -> None:
        """The job goes back to the queue (retry, engine death, reroute)."""
        values: dict[str, Any] = {"state": "queued"}
        if model is not None:
            values.update(model=model, route_rule=rule, route_reason=reason)
        with self.engine.begin() as conn:
            conn.execute(update(Job).where(Job.id == job_id, Job.state.in_(("queued", "running")))
                         .values(**values))

    def state(self, job_id: uuid.UUID) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(Job.state).where(Job.id == job_id)).scalar_one_or_none()
