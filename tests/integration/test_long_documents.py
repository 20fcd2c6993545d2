"""A document longer than its model's context runs as parts, then a combining job: one result, cost summed."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from producer.client import Client
from schemas.tables import Job, LedgerEntry
from switchyard.db import get_engine
from tests.workerproc import WorkerHandle, start_worker, worker_env

PARAGRAPH = ("The tenant shall keep the premises in good repair and shall not make alterations without the "
             "written consent of the landlord, which shall not be unreasonably withheld. ")
# A contract with a named person: PII keeps it on llama-3-70b (8,192 tokens), so it must be split.
CONTRACT = "Summarise this tenancy agreement for Maria Gonzalez, tenant, DOB 1984-03-02.\n\n" + "\n\n".join(
    f"Clause {i}. " + PARAGRAPH * 6 for i in range(60))


@pytest.fixture
def llama(db: str, clean_redis: str, tmp_path: Path) -> Iterator[WorkerHandle]:
    handle = start_worker("llama-3-70b", worker_env(clean_redis, db, SWITCHYARD_SIM_TIME_SCALE="0.05"), tmp_path)
    yield handle
    handle.stop()


def test_long_document_is_split_run_and_combined(client: Client, llama: WorkerHandle, db: str) -> None:
    decision = client.classify({"custom_id": "c", "prompt": CONTRACT})
    assert decision.model == "llama-3-70b" and decision.contains_pii
    assert decision.prompt_tokens > 8192
    batch = client.submit_many([{"custom_id": "contract", "prompt": CONTRACT, "max_tokens": 400}], batch="long")
    counts = client.wait(batch, timeout=60)
    assert counts["states"] == {"succeeded": 1}
    (line,) = list(client.results(batch))
    assert line["custom_id"] == "contract" and line["error"] is None
    engine = get_engine(db)
    with engine.connect() as conn:
        parts = conn.execute(select(func.count()).select_from(Job).where(Job.parent_id.is_not(None))).scalar_one()
        total = conn.execute(select(func.sum(LedgerEntry.cost_usd))).scalar_one()
        biggest = conn.execute(select(func.max(Job.prompt_tokens_estimate))
                               .where(Job.parent_id.is_not(None))).scalar_one()
    chunks = line["switchyard"]["chunks"]
    assert chunks >= 2 and parts == chunks + 1  # the parts, plus the combining job
    assert biggest + 512 <= 8192, "a part does not fit the model's context"
    assert Decimal(str(line["switchyard"]["cost_usd"])) == pytest.approx(total)
    usage = line["response"]["body"]["usage"]
    with engine.connect() as conn:
        tokens = conn.execute(select(func.sum(LedgerEntry.input_tokens))).scalar_one()
    assert usage["prompt_tokens"] == tokens


def test_no_split_refuses_with_a_clear_error(client: Client, llama: WorkerHandle) -> None:
    job_id = client.submit({"custom_id": "nosplit", "prompt": CONTRACT, "split": False, "max_tokens": 400})
    line = client.result(job_id, timeout=30)
    assert line["switchyard"]["state"] == "failed"
    assert line["error"]["code"] == "context_length_exceeded"
    assert "exceeds llama-3-70b's context" in line["error"]["message"]


def test_a_resumed_submit_publishes_the_parts_an_interrupted_one_recorded(
        client: Client, db: str, clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between recording a split document (parent + parts) and publishing its parts: submitting the
    batch again publishes every part once, and the batch holds nothing unpublished after."""
    import redis

    from producer.queues import queue_depths
    from producer.submit import Submitter
    from schemas.jobs import MODEL_NAMES
    from schemas.tables import Batch

    real_publish = Submitter._publish

    def die(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(Submitter, "_publish", die)
    job = {"custom_id": "contract", "prompt": CONTRACT, "max_tokens": 400}
    with pytest.raises(KeyboardInterrupt):
        client.submit_many([job], batch="resume-long")
    monkeypatch.setattr(Submitter, "_publish", real_publish)
    client.submit_many([job], batch="resume-long")
    with get_engine(db).connect() as conn:
        parts = conn.execute(select(func.count()).where(Job.parent_id.is_not(None))).scalar_one()
        held = conn.execute(select(Batch.unpublished).where(Batch.name == "resume-long")).scalar_one()
    assert parts > 1 and held == []
    assert sum(queue_depths(redis.Redis.from_url(clean_redis), MODEL_NAMES).values()) == parts
    assert client.last_report.republished == parts


def test_a_part_redelivered_after_its_result_was_written_still_moves_its_document_on(client: Client,
                                                                                    db: str) -> None:
    """The worker writes a part's result, then dies (or the database fails) before the document moves on. The
    part's next delivery finds it final; it must still enqueue the combining job, or the document never ends."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    from switchyard.catalog import load_catalog
    from workers.engines.base import GenerationRequest, GenerationResult
    from workers.executor import Executor
    from workers.mapreduce import COMBINE_SUFFIX, MapReduce
    from workers.recorder import Recorder

    class Engine:
        def generate(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
            return GenerationResult(text="a summary", finish_reason="stop", prompt_tokens=100, completion_tokens=20,
                                    model="m", inference_s=0.01)

    class DiesAfterTheLastPart(MapReduce):
        def part_succeeded(self, claim):  # type: ignore[no-untyped-def]
            if claim.chunk_index == chunks - 1:
                raise OperationalError("SELECT", {}, psycopg.OperationalError("server closed the connection"))
            super().part_succeeded(claim)

    batch = client.submit_many([{"custom_id": "contract", "prompt": CONTRACT, "max_tokens": 400}], batch="long")
    engine, catalog, published = get_engine(db), load_catalog(None), []
    with engine.connect() as conn:
        parts = conn.execute(select(Job.id).where(Job.parent_id.is_not(None)).order_by(Job.chunk_index)).scalars().all()
    chunks = len(parts)
    mapreduce = DiesAfterTheLastPart(engine, catalog, lambda *a: published.append(a), "test")
    executor = Executor(catalog=catalog, model="llama-3-70b", backend_kind="test", runner=Engine(),
                        recorder=Recorder(engine, "test"), republish=lambda *a: None, mapreduce=mapreduce)
    for part in parts[:-1]:
        assert executor.execute(part).kind == "done"
    with pytest.raises(OperationalError):
        executor.execute(parts[-1])  # its result is written; the document did not move on
    assert published == []
    assert executor.execute(parts[-1], 1, redelivered=True).kind == "skip"  # the task's retry
    with engine.connect() as conn:
        combine = conn.execute(select(Job.id).where(Job.custom_id == "contract" + COMBINE_SUFFIX)).scalar_one()
    assert [p[0] for p in published] == [combine]
    assert executor.execute(combine).kind == "done"
    assert client.wait(batch, timeout=10)["states"] == {"succeeded": 1}
