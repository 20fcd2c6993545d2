"""kill -9 a worker mid-batch, and an engine that dies: no job lost, none run twice (checked in Postgres)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from producer.client import Client
from schemas.tables import Job
from switchyard.db import get_engine
from tests.failure.common import ledger_counts, llama_jobs, wait_for
from tests.workerproc import start_worker, worker_env


def test_sigkill_mid_batch_loses_and_duplicates_nothing(client: Client, db: str, clean_redis: str,
                                                        config: Path, tmp_path: Path) -> None:
    env = worker_env(clean_redis, db, config, SWITCHYARD_SIM_TIME_SCALE="1")
    victim = start_worker("llama-3-70b", env, tmp_path, concurrency=32, name="victim")
    batch = client.submit_many(llama_jobs(500), batch="crash")
    wait_for(lambda: ledger_counts(db)[2] >= 100, timeout=60)
    victim.kill9()
    done_at_kill = ledger_counts(db)[2]
    assert done_at_kill < 500, "the worker finished everything before it was killed; the test proves nothing"
    survivor = start_worker("llama-3-70b", env, tmp_path, concurrency=32, name="survivor")
    try:
        counts = client.wait(batch, timeout=90)
    finally:
        survivor.stop()
    assert counts["states"] == {"succeeded": 500}
    results, ledger, succeeded = ledger_counts(db)
    assert (results, ledger, succeeded) == (500, 500, 500)
    with get_engine(db).connect() as conn:
        redelivered = conn.execute(select(func.count()).select_from(Job).where(Job.attempts > 1)).scalar_one()
    assert redelivered > 0, "no job was in flight on the killed worker"


def test_engine_death_exits_nonzero_and_jobs_finish_on_restart(client: Client, db: str, clean_redis: str,
                                                              config: Path, tmp_path: Path) -> None:
    dying = worker_env(clean_redis, db, config, SWITCHYARD_SIM_TIME_SCALE="1", SWITCHYARD_SIM_DIE_AFTER="40")
    worker = start_worker("llama-3-70b", dying, tmp_path, concurrency=16, name="dying")
    batch = client.submit_many(llama_jobs(200), batch="engine-death")
    assert worker.proc.wait(60) == 3, worker.output()[-2000:]
    assert "engine dead" in worker.output()
    assert ledger_counts(db)[2] < 200
    healthy = start_worker("llama-3-70b", worker_env(clean_redis, db, config, SWITCHYARD_SIM_TIME_SCALE="1"),
                           tmp_path, concurrency=16, name="healthy")
    try:
        counts = client.wait(batch, timeout=60)
    finally:
        healthy.stop()
    assert counts["states"] == {"succeeded": 200}
    assert ledger_counts(db) == (200, 200, 200)
