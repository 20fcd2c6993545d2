"""The Postgres schema (SQLAlchemy 2): batches, jobs, results, the cost ledger, dead letters, budgets.

Idempotency lives in the keys, not in the code: a job's result, its ledger entry and its dead letter each have a
UNIQUE ``job_id``, and writers use ``INSERT ... ON CONFLICT DO NOTHING`` in the same transaction as the state
change, so a message the broker delivers twice (acks_late is at-least-once) is recorded and billed once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_STATES = ("queued", "running", "succeeded", "failed", "dead")
FINAL_STATES = ("succeeded", "failed", "dead")

#: USD amounts: 18 digits, 10 after the point (a 10-token Mistral job costs ~1e-6 USD).
Money = Numeric(18, 10)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(300), unique=True)  # --batch NAME, or derived from the file
    source: Mapped[str | None] = mapped_column(Text)  # input file path, when submitted from a file
    created_at: Mapped[datetime] = _now()
    total_jobs: Mapped[int] = mapped_column(Integer, default=0)
    # Jobs recorded but not yet handed to the broker: set in the transaction that inserts a chunk, cleared
    # once its messages are in Redis. A submit killed in between leaves them here for the next run to publish
    # (one array update per chunk instead of one row update per job).
    unpublished: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid), server_default=text("'{}'::uuid[]"), nullable=False, default=list
    )


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("batch_id", "custom_id", name="uq_jobs_batch_custom_id"),
        CheckConstraint(f"state IN {JOB_STATES!r}", name="state"),
        Index("ix_jobs_batch_state", "batch_id", "state"),
        Index("ix_jobs_parent", "parent_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    custom_id: Mapped[str] = mapped_column(String(512))
    seq: Mapped[int] = mapped_column(Integer, default=0)  # position in the input (line number); results order
    state: Mapped[str] = mapped_column(String(16), default="queued")
    model: Mapped[str] = mapped_column(String(64))  # where it was routed (or rerouted)
    requested_model: Mapped[str] = mapped_column(String(64), default="auto")
    route_rule: Mapped[str] = mapped_column(String(32))
    route_reason: Mapped[str] = mapped_column(Text)
    contains_pii: Mapped[bool] = mapped_column(Boolean, default=False)
    pii_types: Mapped[list[str]] = mapped_column(JSONB, default=list)
    complexity: Mapped[float] = mapped_column(Float, default=0.0)
    expected_output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens_estimate: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    tenant: Mapped[str | None] = mapped_column(String(200))
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)  # messages, max_tokens, sampling options
    job_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # deliveries seen by workers
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    chunk_index: Mapped[int | None] = mapped_column(Integer)  # position of a chunk of a split document
    chunk_count: Mapped[int | None] = mapped_column(Integer)  # on the parent: number of map chunks
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    # Set when the job is recorded (a submit publishes it right after; until then it is listed in its batch's
    # ``unpublished``).
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # first delivery
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # latest delivery
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Result(Base):
    """A job's outcome as returned to the user; exactly one per job."""

    __tablename__ = "results"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(32))  # simulated | vllm-inprocess | vllm-remote | openai | ...
    status_code: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(200))
    body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # chat.completion, or None when failed
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    simulated: Mapped[bool] = mapped_column(Boolean)
    worker: Mapped[str | None] = mapped_column(String(200))  # hostname of the worker
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = _now()


class LedgerEntry(Base):
    """What a job cost, written in the same transaction as its result; exactly one per job."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_created", "created_at"),
        Index("ix_ledger_batch", "batch_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    tenant: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    self_hosted: Mapped[bool] = mapped_column(Boolean)
    simulated: Mapped[bool] = mapped_column(Boolean)
    route_rule: Mapped[str] = mapped_column(String(32))
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    input_usd_per_mtok: Mapped[Decimal] = mapped_column(Money)  # price in force when the job ran
    output_usd_per_mtok: Mapped[Decimal] = mapped_column(Money)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # self-hosted: pool time attributed
    cost_usd: Mapped[Decimal] = mapped_column(Money)  # marginal cost of this job
    baseline_usd: Mapped[Decimal] = mapped_column(Money)  # same tokens on the all-commercial baseline
    queue_wait_ms: Mapped[int] = mapped_column(Integer)
    inference_ms: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)  # queue wait + inference (+ writes)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _now()


class DeadLetter(Base):
    """A job that will not run again without a human: fatal error, attempts exhausted, or policy refusal."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    model: Mapped[str] = mapped_column(String(64))
    reason_code: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the message as received, for replay
    created_at: Mapped[datetime] = _now()


class BudgetPeriod(Base):
    """One budget scope ('*' overall, or a tenant) for one month: limit, reserved and spent USD.

    Reservations lock this row (SELECT ... FOR UPDATE), so concurrent commercial calls cannot overrun it.
    """

    __tablename__ = "budget_periods"
    __table_args__ = (UniqueConstraint("scope", "month", name="uq_budget_periods_scope_month"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(200))  # "*" or a tenant
    month: Mapped[str] = mapped_column(String(7))  # "YYYY-MM" (UTC)
    limit_usd: Mapped[Decimal] = mapped_column(Money)
    reserved_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    spent_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))


class BudgetReservation(Base):
    """A hold on budget for one job's commercial call; settled to the real cost or released."""

    __tablename__ = "budget_reservations"
    __table_args__ = (CheckConstraint("state IN ('reserved', 'settled', 'released')", name="state"),)

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7))
    scopes: Mapped[list[str]] = mapped_column(JSONB)  # the budget scopes held
    amount_usd: Mapped[Decimal] = mapped_column(Money)  # held (worst case) or settled (real) amount
    state: Mapped[str] = mapped_column(String(16), default="reserved")
    created_at: Mapped[datetime] = _now()


class NightlySubmission(Base):
    """A file the nightly schedule submitted, so that it is submitted once."""

    __tablename__ = "nightly_submissions"
    __table_args__ = (UniqueConstraint("path", "size", "mtime_ns", name="uq_nightly_file"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    batch_name: Mapped[str] = mapped_column(String(300))
    jobs: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
