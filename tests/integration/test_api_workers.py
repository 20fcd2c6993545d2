"""Commercial workers against local servers that speak the OpenAI and Anthropic protocols, through the SDKs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from producer.client import Client
from producer.publish import BulkPublisher, Outgoing
from producer.store import ensure_batch
from schemas.tables import DeadLetter, Job, LedgerEntry
from switchyard.db import get_engine
from switchyard.localapi import anthropic_server, openai_server
from tests.workerproc import WorkerHandle, start_worker, worker_env

HARD = "Prove that the square root of 2 is irrational, then explain how the proof generalises."
CONFIG = """
[models."gpt-4-turbo"]
circuit_failures = 3
circuit_cooldown_s = 2
max_attempts = 4
fallback = ["llama-3-70b"]
[models."claude-3-opus"]
max_attempts = 3
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "switchyard.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def openai_srv() -> Iterator[object]:
    with openai_server() as srv:
        yield srv


@pytest.fixture
def gpt_worker(db: str, clean_redis: str, config: Path, tmp_path: Path, openai_srv) -> Iterator[WorkerHandle]:
    env = worker_env(clean_redis, db, config, OPENAI_BASE_URL=openai_srv.base_url, OPENAI_API_KEY="sk-local-test")
    handle = start_worker("gpt-4-turbo", env, tmp_path, engine=None, concurrency=8)
    yield handle
    handle.stop()


def calls(srv) -> list[object]:  # type: ignore[no-untyped-def]
    """Model calls the server received (not the worker's start-up GET /v1/models)."""
    return [r for r in srv.requests() if r.method == "POST"]


def _job(custom_id: str, prompt: str = HARD, model: str = "gpt-4-turbo") -> dict[str, object]:
    return {"custom_id": custom_id, "prompt": prompt, "model": model, "max_tokens": 64}


def test_success_records_usage_cost_and_simulated_marker(client: Client, gpt_worker: WorkerHandle,
                                                         openai_srv, db: str) -> None:
    line = client.result(client.submit(_job("ok")), timeout=30)
    assert line["switchyard"]["state"] == "succeeded"
    usage = line["response"]["body"]["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert line["switchyard"]["simulated"] is True  # the local server says so in a header
    with get_engine(db).connect() as conn:
        cost = conn.execute(select(LedgerEntry.cost_usd)).scalar_one()
    expected = (Decimal(10) * usage["prompt_tokens"] + Decimal(30) * usage["completion_tokens"]) / 10**6
    assert cost == expected
    assert len(calls(openai_srv)) == 1


def test_429_retry_after_is_honoured(client: Client, gpt_worker: WorkerHandle, openai_srv) -> None:
    openai_srv.fail_next(1, status=429, retry_after=2)
    started = time.monotonic()
    line = client.result(client.submit(_job("limited")), timeout=40)
    assert line["switchyard"]["state"] == "succeeded"
    assert line["switchyard"]["attempts"] == 2
    assert time.monotonic() - started >= 2.0, "retried before the provider's Retry-After"


def test_5xx_is_retried_then_succeeds(client: Client, gpt_worker: WorkerHandle, openai_srv) -> None:
    openai_srv.fail_next(2, status=500)
    line = client.result(client.submit(_job("flaky")), timeout=40)
    assert line["switchyard"]["state"] == "succeeded"
    assert line["switchyard"]["attempts"] == 3


def test_fatal_400_is_dead_lettered_at_once(client: Client, gpt_worker: WorkerHandle, openai_srv,
                                            db: str) -> None:
    openai_srv.fail_next(1, status=400)
    line = client.result(client.submit(_job("bad")), timeout=30)
    assert line["switchyard"]["state"] == "failed"
    assert line["error"]["code"] == "provider_rejected"
    assert line["switchyard"]["attempts"] == 1
    with get_engine(db).connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeadLetter)).scalar() == 1


def test_pii_job_placed_by_hand_on_commercial_queue_never_reaches_provider(
        client: Client, gpt_worker: WorkerHandle, openai_srv, db: str, clean_redis: str) -> None:
    secret = "Patient Maria Gonzalez, SSN 123-45-6789, needs her MRI results explained."
    engine = get_engine(db)
    batch_id = ensure_batch(engine, "manual")
    job_id = uuid.uuid4()
    with engine.begin() as conn:  # a buggy producer: routed to GPT-4, and the PII flag is wrong
        conn.execute(Job.__table__.insert().values(
            id=job_id, batch_id=batch_id, custom_id="leak", seq=1, state="queued", model="gpt-4-turbo",
            requested_model="gpt-4-turbo", route_rule="explicit", route_reason="manual", contains_pii=False,
            pii_types=[], complexity=0.9, expected_output_tokens=50, prompt_tokens_estimate=30, priority=0,
            request={"messages": [{"role": "user", "content": secret}], "max_tokens": 50}, attempts=0,
            enqueued_at=func.now()))
    BulkPublisher(redis.Redis.from_url(clean_redis)).publish([Outgoing(str(job_id), "gpt-4-turbo")])
    line = client.result(str(job_id), timeout=30)
    assert line["switchyard"]["state"] == "dead"
    assert line["error"]["code"] == "pii_policy_violation"
    assert not openai_srv.saw_prompt(secret)
    assert calls(openai_srv) == []


def test_circuit_opens_and_jobs_fall_back_then_closes(client: Client, gpt_worker: WorkerHandle, openai_srv,
                                                      db: str, clean_redis: str, config: Path,
                                                      tmp_path: Path) -> None:
    llama = start_worker("llama-3-70b", worker_env(clean_redis, db, config, SWITCHYARD_SIM_TIME_SCALE="0.1"),
                         tmp_path)
    try:
        openai_srv.fail_next(3, status=503)
        first = [client.submit(_job(f"c{i}")) for i in range(3)]
        time.sleep(1.5)  # three failures: the circuit opens
        later = [client.submit(_job(f"d{i}")) for i in range(3)]
        lines = [client.result(j, timeout=40) for j in first + later]
        assert all(line["switchyard"]["state"] == "succeeded" for line in lines)
        fell_back = [line for line in lines if line["switchyard"]["model"] == "llama-3-70b"]
        assert fell_back, "no job fell back while the circuit was open"
        assert all("fell back" in line["switchyard"]["route_reason"] for line in fell_back)
        time.sleep(2.5)  # cooldown: one probe goes through and closes it
        line = client.result(client.submit(_job("after")), timeout=30)
        assert line["switchyard"]["model"] == "gpt-4-turbo"
    finally:
        llama.stop()


def test_anthropic_worker_maps_system_prompt_and_usage(db: str, clean_redis: str, config: Path,
                                                       tmp_path: Path, client: Client) -> None:
    with anthropic_server() as srv:
        env = worker_env(clean_redis, db, config, ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="sk-ant-x")
        worker = start_worker("claude-3-opus", env, tmp_path, engine=None, concurrency=4)
        try:
            job = {"custom_id": "essay", "body": {"model": "claude-3-opus", "max_tokens": 64, "messages": [
                {"role": "system", "content": "You write essays."},
                {"role": "user", "content": "Write an essay on the history of canals."}]}}
            line = client.result(client.submit(job), timeout=30)
        finally:
            worker.stop()
        assert line["switchyard"]["state"] == "succeeded"
        assert line["response"]["body"]["usage"]["completion_tokens"] > 0
        assert len(calls(srv)) == 1
