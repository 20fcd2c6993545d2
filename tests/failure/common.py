"""What the failure tests share: a catalog that redelivers in seconds, a workload, and the ledger's counts."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import func, select

from schemas.tables import Job, LedgerEntry, Result
from switchyard.db import get_engine

# A short visibility timeout and reaper period, so that messages a failure took away come back within seconds
# (in production they are hours and minutes: longer than any job).
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


def llama_jobs(n: int) -> list[dict[str, object]]:
    return [{"custom_id": f"k-{i}", "model": "llama-3-70b", "max_tokens": 32,
             "prompt": f"Write two sentences about the history of bridge number {i}."} for i in range(n)]


def ledger_counts(db: str) -> tuple[int, int, int]:
    """(results, ledger entries, succeeded jobs): equal and complete when nothing was lost or run twice."""
    with get_engine(db).connect() as conn:
        results = conn.execute(select(func.count()).select_from(Result)).scalar_one()
        ledger = conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()
        succeeded = conn.execute(select(func.count()).select_from(Job).where(Job.state == "succeeded")).scalar_one()
    return results, ledger, succeeded


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)
