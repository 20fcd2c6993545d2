"""The worker's logic against real Postgres, with a stand-in backend (transport-free, deterministic)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select

from producer.store import ensure_batch
from schemas.tables import DeadLetter, Job, LedgerEntry
from switchyard.catalog import load_catalog
from switchyard.db import get_engine
from switchyard.errors import EngineDeadError, ProviderRetryableError
from workers.engines.base import GenerationRequest, GenerationResult
from workers.executor import Executor
from workers.recorder import Recorder


class Backend:
    """Answers, or raises what it is told to, in order."""

    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def generate(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return GenerationResult(text="ok", finish_reason="stop", prompt_tokens=1000, completion_tokens=500,
                                model="m", inference_s=0.1)


def _job(engine, model: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    job_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(Job.__table__.insert().values(
            id=job_id, batch_id=ensure_batch(engine, "x"), custom_id=str(job_id), seq=0, state="queued",
            model=model, requested_model=model, route_rule="explicit", route_reason="r", contains_pii=False,
            pii_types=[], complexity=0.5, expected_output_tokens=10, prompt_tokens_estimate=10, priority=0,
            request={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 600}, attempts=0,
            enqueued_at=func.now()))
    return job_id


def _executor(db: str, backend: Backend, catalog=None, model: str = "gpt-4-turbo") -> Executor:  # type: ignore[no-untyped-def]
    engine = get_engine(db)
    return Executor(catalog=catalog or load_catalog(None), model=model, backend_kind="test", runner=backend,
                    recorder=Recorder(engine, "test"), republish=lambda *a: None)


def test_price_change_applies_to_new_jobs_only(db: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = get_engine(db)
    old, new = _job(engine, "gpt-4-turbo"), _job(engine, "gpt-4-turbo")
    assert _executor(db, Backend()).execute(old).kind == "done"
    config = tmp_path / "p.toml"
    config.write_text('[models."gpt-4-turbo"]\ninput_usd_per_mtok = 20.0\noutput_usd_per_mtok = 60.0\n')
    assert _executor(db, Backend(), load_catalog(config)).execute(new).kind == "done"
    with engine.connect() as conn:
        rows = dict(conn.execute(select(LedgerEntry.job_id, LedgerEntry.cost_usd)).all())
        prices = dict(conn.execute(select(LedgerEntry.job_id, LedgerEntry.input_usd_per_mtok)).all())
    assert rows[old] == Decimal("0.025")  # 1000 x $10/M + 500 x $30/M
    assert rows[new] == Decimal("0.050")
    assert (prices[old], prices[new]) == (Decimal(10), Decimal(20))


def test_redelivered_and_retried_jobs_are_billed_once(db: str) -> None:
    engine = get_engine(db)
    job_id = _job(engine, "gpt-4-turbo")
    backend = Backend(ProviderRetryableError("503", provider="openai", status=503))
    executor = _executor(db, backend)
    assert executor.execute(job_id).kind == "retry"
    assert executor.execute(job_id).kind == "done"
    assert executor.execute(job_id).kind == "skip"  # the broker redelivers the finished job's message
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LedgerEntry)).scalar() == 1
        assert conn.execute(select(Job.attempts).where(Job.id == job_id)).scalar() == 2
    assert backend.calls == 2


def test_a_job_that_keeps_killing_engines_is_dead_lettered(db: str) -> None:
    engine = get_engine(db)
    job_id = _job(engine, "llama-3-70b")
    max_attempts = load_catalog(None).model("llama-3-70b").max_attempts
    backend = Backend(*[EngineDeadError("CUDA out of memory")] * 50)
    executor = _executor(db, backend, model="llama-3-70b")
    kinds = [executor.execute(job_id).kind for _ in range(max_attempts + 1)]
    assert kinds == ["requeue"] * max_attempts + ["done"]
    with engine.connect() as conn:
        state, code = conn.execute(select(Job.state, Job.error_code).where(Job.id == job_id)).one()
        assert (state, code) == ("dead", "attempts_exhausted")
        assert conn.execute(select(func.count()).select_from(DeadLetter)).scalar() == 1


class FlakyRecorder(Recorder):
    """Writes results, except that the first write fails as a database outage does."""

    def __init__(self, engine, worker: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(engine, worker)
        self.failures = 1

    def succeed(self, claim, outcome):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            import psycopg
            from sqlalchemy.exc import OperationalError

            raise OperationalError("INSERT INTO results", {}, psycopg.OperationalError("server closed the connection"))
        return super().succeed(claim, outcome)


def test_a_result_the_database_failed_to_record_is_written_by_the_retry_not_bought_again(db: str) -> None:
    from sqlalchemy.exc import OperationalError

    engine = get_engine(db)
    job_id = _job(engine, "gpt-4-turbo")
    backend = Backend()
    executor = Executor(catalog=load_catalog(None), model="gpt-4-turbo", backend_kind="test", runner=backend,
                        recorder=FlakyRecorder(engine, "test"), republish=lambda *a: None)
    try:
        executor.execute(job_id)
    except OperationalError:
        pass  # the Celery task retries it (workers/tasks.py)
    else:
        raise AssertionError("the failed write was swallowed")
    assert executor.execute(job_id, 1, redelivered=True).kind == "done"  # the task's retry
    assert backend.calls == 1  # the provider was paid once
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LedgerEntry)).scalar() == 1
        assert conn.execute(select(Job.state, Job.attempts).where(Job.id == job_id)).one() == ("succeeded", 2)
    assert len(executor.unwritten) == 0
