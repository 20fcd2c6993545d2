"""Jobs flow from submit_many through real worker processes to results and ledger entries in Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from producer.client import Client
from producer.queues import queue_depths
from schemas.tables import LedgerEntry, Result
from switchyard.db import get_engine
from tests.workerproc import WorkerHandle, start_worker, worker_env

SIMPLE = "What is the capital of France?"
MEDIUM = ("Summarise the main differences between renewable and non-renewable energy sources for a policy "
          "briefing, covering cost, reliability, environmental impact and job creation.")


def _jobs(n: int) -> list[dict[str, object]]:
    return [{"custom_id": f"job-{i}", "prompt": SIMPLE if i % 2 else MEDIUM, "max_tokens": 48,
             "metadata": {"i": i}} for i in range(n)]


@pytest.fixture
def workers(db: str, clean_redis: str, tmp_path: Path) -> Iterator[list[WorkerHandle]]:
    env = worker_env(clean_redis, db, SWITCHYARD_SIM_TIME_SCALE="0.2")
    handles = [start_worker(m, env, tmp_path) for m in ("llama-3-70b", "mistral-7b")]
    yield handles
    for h in handles:
        h.stop()


def test_jobs_flow_to_results_and_ledger(client: Client, workers: list[WorkerHandle], db: str) -> None:
    batch = client.submit_many(_jobs(60), batch="flow")
    counts = client.wait(batch, timeout=60)
    assert counts["states"] == {"succeeded": 60}
    lines = list(client.results(batch))
    assert [line["custom_id"] for line in lines] == [f"job-{i}" for i in range(60)]
    for line in lines:
        info = line["switchyard"]
        assert info["simulated"] is True, "simulated output must say so"
        assert line["response"]["body"]["choices"][0]["message"]["content"].startswith("[simulated")
        assert info["model"] in ("llama-3-70b", "mistral-7b")
        assert info["cost_usd"] > 0 and info["latency_ms"] is not None
        assert line["error"] is None
    engine = get_engine(db)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Result)).scalar() == 60
        assert conn.execute(select(func.count()).select_from(LedgerEntry)).scalar() == 60
    # Resubmitting the same batch enqueues nothing new.
    client.submit_many(_jobs(60), batch="flow")
    assert client.last_report is not None
    assert (client.last_report.submitted, client.last_report.skipped) == (0, 60)
    assert sum(queue_depths(redis.Redis.from_url(client.settings.broker_url), ["llama-3-70b", "mistral-7b"])
               .values()) == 0


def test_single_job_result(client: Client, workers: list[WorkerHandle]) -> None:
    job_id = client.submit({"custom_id": "one", "prompt": SIMPLE, "max_tokens": 16})
    line = client.result(job_id, timeout=30)
    assert line["switchyard"]["state"] == "succeeded"
    assert line["response"]["status_code"] == 200
