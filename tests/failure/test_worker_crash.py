"""kill -9 a worker mid-batch, and an engine that dies: no job lost, none run twice (checked in Postgres)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from producer.client import Client
from schemas.tables import Job, LedgerEntry, Result
from switchyard.db import get_engine
from switchyard.settings import Settings
from tests.workerproc import start_worker, worker_env

# A short visibility timeout so that the messages a SIGKILLed worker held come back within seconds (in
# production it is hours: longer than any job).
FAST_REDELIVERY = """
visibility_timeout_s = 6
orphan_grace_s = 4
reaper_interval_s = 2
[models."llama-3-70b"]
timeout_s = 5
concurrency = 32
[models."mistral-7b"]
timeout_s = 5
[models."gpt-4-turbo"]
timeout_s = 5
[models."claude-3-opus"]
timeout_s = 5
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "switchyard.toml"
    path.write_text(FAST_REDELIVERY)
    return path


@pytest.fixture
def client(db: str, clean_redis: str, config: Path) -> Iterator[Client]:
    c = Client(broker_url=clean_redis, database_url=db,
               settings=Settings.from_env({"SWITCHYARD_CONFIG": str(config)}))
    yield c
    c.close()


def _jobs(n: int) -> list[dict[str, object]]:
    return [{"custom_id": f"k-{i}", "model": "llama-3-70b", "max_tokens": 32,
             "prompt": f"Write two sentences about the history of bridge number {i}."} for i in range(n)]


def _counts(db: str) -> tuple[int, int, int]:
    with get_engine(db).connect() as conn:
        results = conn.execute(select(func.count()).select_from(Result)).scalar_one()
        ledger = conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()
        succeeded = conn.execute(select(func.count()).select_from(Job).where(Job.state == "succeeded")).scalar_one()
    return results, ledger, succeeded


def _wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def test_sigkill_mid_batch_loses_and_duplicates_nothing(client: Client, db: str, clean_redis: str,
                                                        config: Path, tmp_path: Path) -> None:
    env = worker_env(clean_redis, db, config, SWITCHYARD_SIM_TIME_SCALE="1")
    victim = start_worker("llama-3-70b", env, tmp_path, concurrency=32, name="victim")
    batch = client.submit_many(_jobs(500), batch="crash")
    _wait_for(lambda: _counts(db)[2] >= 100, timeout=60)
    victim.kill9()
    done_at_kill = _counts(db)[2]
    assert done_at_kill < 500, "the worker finished everything before it was killed; the test proves nothing"
    survivor = start_worker("llama-3-70b", env, tmp_path, concurrency=32, name="survivor")
    try:
        counts = client.wait(batch, timeout=90)
    finally:
        survivor.stop()
    assert counts["states"] == {"succeeded": 500}
    results, ledger, succeeded = _counts(db)
    assert (results, ledger, succeeded) == (500, 500, 500)
    with get_engine(db).connect() as conn:
        redelivered = conn.execute(select(func.count()).select_from(Job).where(Job.attempts > 1)).scalar_one()
    assert redelivered > 0, "no job was in flight on the killed worker"


def test_engine_death_exits_nonzero_and_jobs_finish_on_restart(client: Client, db: str, clean_redis: str,
                                                              config: Path, tmp_path: Path) -> None:
    dying = worker_env(clean_redis, db, config, SWITCHYARD_SIM_TIME_SCALE="1", SWITCHYARD_SIM_DIE_AFTER="40")
    worker = start_worker("llama-3-70b", dying, tmp_path, concurrency=16, name="dying")
    batch = client.submit_many(_jobs(200), batch="engine-death")
    assert worker.proc.wait(60) == 3, worker.output()[-2000:]
    assert "engine dead" in worker.output()
    assert _counts(db)[2] < 200
    healthy = start_worker("llama-3-70b", worker_env(clean_redis, db, config, SWITCHYARD_SIM_TIME_SCALE="1"),
                           tmp_path, concurrency=16, name="healthy")
    try:
        counts = client.wait(batch, timeout=60)
    finally:
        healthy.stop()
    assert counts["states"] == {"succeeded": 200}
    assert _counts(db) == (200, 200, 200)
