"""Migrations produce exactly the tables the models declare; writes are idempotent by their keys."""

from __future__ import annotations

import uuid
from decimal import Decimal

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from schemas.tables import Base, Batch, Job, LedgerEntry, Result
from switchyard import db as dbmod
from switchyard.db import get_engine
from workers.recorder import Outcome, Recorder


def test_migrations_match_models_without_drift(fresh_database: str) -> None:
    from alembic.script import ScriptDirectory

    assert dbmod.current_revision(fresh_database) is None
    dbmod.upgrade(fresh_database)
    # What the CLI checks on start-up without loading Alembic: the head this code expects is Alembic's head.
    head = ScriptDirectory.from_config(dbmod.alembic_config(fresh_database)).get_current_head()
    assert dbmod.current_revision(fresh_database) == dbmod.SCHEMA_HEAD == head
    engine = get_engine(fresh_database)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def _job(engine, batch_id) -> uuid.UUID:  # type: ignore[no-untyped-def]
    job_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(Job.__table__.insert().values(
            id=job_id, batch_id=batch_id, custom_id="c1", seq=1, state="queued", model="llama-3-70b",
            requested_model="auto", route_rule="default", route_reason="default", contains_pii=False,
            pii_types=[], complexity=0.5, expected_output_tokens=100, prompt_tokens_estimate=10, priority=0,
            request={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}, attempts=0,
            enqueued_at=func.now()))
    return job_id


def test_second_write_of_result_and_ledger_changes_nothing(db: str) -> None:
    engine = get_engine(db)
    with engine.begin() as conn:
        batch_id = conn.execute(Batch.__table__.insert().values(id=uuid.uuid4(), name="b", total_jobs=1)
                                .returning(Batch.id)).scalar_one()
    job_id = _job(engine, batch_id)
    rec = Recorder(engine, "test")
    outcome = Outcome(body={"choices": []}, request_id="r", backend="simulated", simulated=True, input_tokens=5,
                      output_tokens=7, queue_wait_ms=1, inference_ms=2, latency_ms=3, cost_usd=Decimal("0.001"),
                      baseline_usd=Decimal("0.01"), input_usd_per_mtok=Decimal(1), output_usd_per_mtok=Decimal(2),
                      gpu_seconds=0.1, provider="vllm", self_hosted=True)
    first = rec.claim(job_id, lease_s=60)
    assert first is not None and first.attempts == 1
    assert rec.succeed(first, outcome) is True
    # A redelivered message: the claim finds the job final, and a forced second write is refused.
    assert rec.claim(job_id, lease_s=60) is None
    assert rec.succeed(first, outcome) is False
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Result)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(LedgerEntry)).scalar() == 1
        assert conn.execute(select(func.sum(LedgerEntry.cost_usd))).scalar() == Decimal("0.001")
        assert conn.execute(select(Job.state).where(Job.id == job_id)).scalar() == "succeeded"
