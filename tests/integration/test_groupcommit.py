"""Group commit (workers/groupcommit.py) against real Postgres: many jobs per transaction, each recorded once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from schemas.tables import Job, LedgerEntry, Result
from switchyard.catalog import load_catalog
from switchyard.db import get_engine
from tests.integration.test_executor import Backend, _job
from workers.executor import Executor
from workers.groupcommit import BatchedRecorder
from workers.recorder import Claim, Outcome, Recorder

MODEL = "llama-3-70b"


@pytest.fixture
def recorder(db: str) -> Iterator[BatchedRecorder]:
    rec = BatchedRecorder(get_engine(db), "test", claim_linger_s=0.02, succeed_linger_s=0.05)
    rec.start()
    yield rec
    rec.stop()


def _executor(recorder: Recorder) -> Executor:
    return Executor(catalog=load_catalog(None), model=MODEL, backend_kind="test", runner=Backend(),
                    recorder=recorder, republish=lambda *a: None)


def _counts(db: str, job_ids: list[uuid.UUID]) -> tuple[int, int, int, int]:
    with get_engine(db).connect() as conn:
        results = conn.execute(select(func.count()).where(Result.job_id.in_(job_ids))).scalar_one()
        ledger = conn.execute(select(func.count()).where(LedgerEntry.job_id.in_(job_ids))).scalar_one()
        done = conn.execute(select(func.count()).where(Job.id.in_(job_ids), Job.state == "succeeded")).scalar_one()
        attempts = conn.execute(select(func.sum(Job.attempts)).where(Job.id.in_(job_ids))).scalar_one()
    return results, ledger, done, attempts


def _together(n: int, call: Callable[[int], Any]) -> list[Any]:
    """``call(i)`` for i < n, all in flight at once (as the worker's task threads are)."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def test_concurrent_jobs_are_recorded_once_each_in_few_transactions(db: str, recorder: BatchedRecorder) -> None:
    engine = get_engine(db)
    job_ids = [_job(engine, MODEL) for _ in range(40)]
    executor = _executor(recorder)
    assert _together(40, lambda i: executor.execute(job_ids[i]).kind) == ["done"] * 40
    assert _counts(db, job_ids) == (40, 40, 40, 40)
    assert recorder.written == 80  # 40 claims + 40 results...
    assert recorder.batches <= 20  # ...in a few transactions, not 80
    # The broker redelivers every message (e.g. the worker died before its acks): nothing runs or bills twice.
    kinds = _together(40, lambda i: executor.execute(job_ids[i], redelivered=True).kind)
    assert kinds == ["skip"] * 40
    assert _counts(db, job_ids) == (40, 40, 40, 40)


def _claim_and_outcome(db: str) -> tuple[Claim, Outcome]:
    """A claimed job and its outcome, as the executor builds them (through the plain Recorder)."""
    engine = get_engine(db)
    recorded: list[tuple[Claim, Outcome]] = []

    class Capture(Recorder):
        def succeed(self, claim: Claim, out: Outcome) -> bool:
            recorded.append((claim, out))
            return True

    Executor(catalog=load_catalog(None), model=MODEL, backend_kind="test", runner=Backend(),
             recorder=Capture(engine, "test"), republish=lambda *a: None).execute(_job(engine, MODEL))
    return recorded[0]


def test_two_deliveries_in_one_batch_are_claimed_and_recorded_once(db: str, recorder: BatchedRecorder) -> None:
    job_id = _job(get_engine(db), MODEL)
    claims = _together(2, lambda _: recorder.claim(job_id, lease_s=60))
    assert sorted(c is None for c in claims) == [False, True]  # the second one saw the job running
    claim = next(c for c in claims if c is not None)
    _, out = _claim_and_outcome(db)
    assert sorted(_together(2, lambda _: recorder.succeed(claim, out))) == [False, True]
    assert _counts(db, [job_id]) == (1, 1, 1, 1)


def test_a_result_is_committed_before_succeed_returns(db: str, recorder: BatchedRecorder) -> None:
    """The task returns, and Celery acks its message, only after this: no ack for an uncommitted result."""
    claim, out = _claim_and_outcome(db)
    assert recorder.succeed(claim, out) is True
    with get_engine(db).connect() as conn:  # another connection: committed, not only written
        assert conn.execute(select(Job.state).where(Job.id == claim.job_id)).scalar_one() == "succeeded"
        assert conn.execute(select(func.count()).where(LedgerEntry.job_id == claim.job_id)).scalar_one() == 1


def test_a_bad_row_fails_only_its_own_job(db: str, recorder: BatchedRecorder) -> None:
    (good, good_out), (bad, bad_out) = _claim_and_outcome(db), _claim_and_outcome(db)
    bad_out = replace(bad_out, body={"text": "NUL \x00 is not allowed in jsonb"})

    def record(i: int) -> bool | BaseException:
        try:
            return recorder.succeed(*((good, good_out), (bad, bad_out))[i])
        except DBAPIError as exc:
            return exc

    ok, error = _together(2, record)
    assert ok is True and isinstance(error, DBAPIError)
    assert _counts(db, [good.job_id])[:3] == (1, 1, 1)
    assert _counts(db, [bad.job_id])[:3] == (0, 0, 0)


def test_stop_commits_what_is_waiting_then_writes_directly(db: str) -> None:
    rec = BatchedRecorder(get_engine(db), "test", succeed_linger_s=30.0)
    rec.start()
    claim, out = _claim_and_outcome(db)
    answer: list[bool] = []
    waiter = threading.Thread(target=lambda: answer.append(rec.succeed(claim, out)))
    waiter.start()
    time.sleep(0.2)
    assert answer == []  # lingering for company
    rec.stop()  # a worker shutting down: what finished tasks wait for is committed, not dropped
    waiter.join(5)
    assert answer == [True] and _counts(db, [claim.job_id])[:3] == (1, 1, 1)
    job_id = _job(get_engine(db), MODEL)
    assert rec.claim(job_id, lease_s=60) is not None and rec.batches == 1  # straight to the database



class _LateToLock:
    """The recorder's condition, but the thread named "late" pauses before taking its lock."""

    def __init__(self, cond: threading.Condition, pause_s: float) -> None:
        self.cond, self.pause_s = cond, pause_s

    def __enter__(self) -> bool:
        if threading.current_thread().name == "late":
            time.sleep(self.pause_s)
        return self.cond.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.cond.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cond, name)


def test_a_write_queued_while_the_writer_takes_a_batch_is_not_lost(db: str) -> None:
    """A task thread about to queue its write while the writer takes the pending ones must still be answered
    (a lost write hangs its task, and holds its message, for ever)."""
    rec = BatchedRecorder(get_engine(db), "test", claim_linger_s=0.03)
    rec._cond = _LateToLock(rec._cond, pause_s=0.2)  # type: ignore[assignment]
    rec.start()
    answers: list[Claim | None] = []
    first = threading.Thread(target=lambda: answers.append(rec.claim(uuid.uuid4(), 60)), daemon=True)
    late = threading.Thread(target=lambda: answers.append(rec.claim(uuid.uuid4(), 60)), name="late", daemon=True)
    first.start()
    time.sleep(0.005)
    late.start()  # decides to queue now, gets the lock after the writer has taken the first claim's batch
    first.join(5)
    late.join(5)
    assert answers == [None, None], "a claim was never answered"
    rec.stop()


def test_a_dropped_connection_fails_one_batch_as_retryable_and_the_next_one_reconnects(
        db: str, recorder: BatchedRecorder) -> None:
    """The writer keeps one connection between transactions. When the database drops it (a restart, a killed
    backend), the batch in flight fails with a retryable error (the task runs again) and the next batch works."""
    from sqlalchemy import text

    first = _job(get_engine(db), MODEL)
    assert recorder.claim(first, lease_s=60) is not None  # the writer's connection is open now
    with get_engine(db).connect() as conn:
        killed = conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state = 'idle'")).all()
    assert killed
    second, third = _job(get_engine(db), MODEL), _job(get_engine(db), MODEL)
    with pytest.raises(DBAPIError) as dropped:
        recorder.claim(second, lease_s=60)
    assert dropped.value.connection_invalidated  # what the Celery task retries
    assert recorder.claim(third, lease_s=60) is not None
    assert recorder.claim(second, lease_s=60) is not None  # the retried delivery
