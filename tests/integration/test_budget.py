"""Budgets hold under concurrency: reserved before the call, settled after, never overrun."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from producer.client import Client
from producer.store import ensure_batch
from schemas.tables import BudgetPeriod, Job, LedgerEntry
from switchyard.budget import Budgets
from switchyard.catalog import BudgetSpec
from switchyard.db import get_engine
from switchyard.errors import BudgetExceeded
from switchyard.localapi import openai_server
from switchyard.settings import Settings
from tests.workerproc import start_worker, worker_env


def _jobs_in_db(engine, n: int) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    batch_id = ensure_batch(engine, "budget")
    ids = [uuid.uuid4() for _ in range(n)]
    with engine.begin() as conn:
        conn.execute(Job.__table__.insert(), [dict(
            id=i, batch_id=batch_id, custom_id=f"b{k}", seq=k, state="queued", model="gpt-4-turbo",
            requested_model="auto", route_rule="complexity_high", route_reason="r", contains_pii=False, pii_types=[],
            complexity=0.9, expected_output_tokens=10, prompt_tokens_estimate=10, priority=0, tenant="legal",
            request={"messages": [{"role": "user", "content": "x"}]}, attempts=0) for k, i in enumerate(ids)])
    return ids


def test_fifty_concurrent_reservations_admit_exactly_ten(db: str) -> None:
    engine = get_engine(db)
    budgets = Budgets(BudgetSpec(tenants={"legal": Decimal("1.00")}), engine)
    ids = _jobs_in_db(engine, 50)

    def reserve(job_id: uuid.UUID) -> bool:
        try:
            budgets.reserve(job_id, "legal", Decimal("0.10"))
            return True
        except BudgetExceeded:
            return False

    with ThreadPoolExecutor(max_workers=25) as pool:
        admitted = sum(pool.map(reserve, ids))
    assert admitted == 10
    with engine.connect() as conn:
        period = conn.execute(select(BudgetPeriod.reserved_usd, BudgetPeriod.spent_usd)).one()
    assert period.reserved_usd == Decimal("1.00") and period.spent_usd == 0


def test_settle_and_release_free_the_hold(db: str) -> None:
    engine = get_engine(db)
    budgets = Budgets(BudgetSpec(monthly_usd=Decimal("1.00")), engine)
    a, b = _jobs_in_db(engine, 2)
    budgets.reserve(a, None, Decimal("0.60"))
    with engine.begin() as conn:
        Budgets.settle(conn, a, Decimal("0.25"))
        Budgets.settle(conn, a, Decimal("0.25"))  # a second settlement changes nothing
    budgets.reserve(b, None, Decimal("0.70"))  # 0.25 spent + 0.70 held <= 1.00
    budgets.release(b)
    with engine.connect() as conn:
        period = conn.execute(select(BudgetPeriod.reserved_usd, BudgetPeriod.spent_usd)).one()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.25"), Decimal(0))


def test_fifty_concurrent_commercial_jobs_never_overrun_the_budget(db: str, clean_redis: str,
                                                                   tmp_path: Path) -> None:
    # Worst case of one job: ~20 prompt tokens x $10/M + 100 output tokens x $30/M ~= $0.0032.
    limit = Decimal("0.032")
    config = tmp_path / "budget.toml"
    config.write_text(f'[budgets]\non_exceed = "fail"\ntenants = {{ legal = {limit} }}\n')
    settings = Settings.from_env({"SWITCHYARD_CONFIG": str(config)})
    client = Client(broker_url=clean_redis, database_url=db, settings=settings)
    with openai_server() as srv:
        env = worker_env(clean_redis, db, config, OPENAI_BASE_URL=srv.base_url, OPENAI_API_KEY="sk-local")
        worker = start_worker("gpt-4-turbo", env, tmp_path, engine=None, concurrency=16)
        try:
            batch = client.submit_many([{"custom_id": f"j{i}", "model": "gpt-4-turbo", "tenant": "legal",
                                         "max_tokens": 100, "prompt": f"Prove lemma {i} about primes."}
                                        for i in range(50)], batch="budgeted")
            counts = client.wait(batch, timeout=60)
        finally:
            worker.stop()
    with get_engine(db).connect() as conn:
        spent = conn.execute(select(func.coalesce(func.sum(LedgerEntry.cost_usd), 0))).scalar_one()
        refused = conn.execute(select(func.count()).select_from(Job).where(Job.error_code == "budget_exceeded")
                               ).scalar_one()
    assert spent <= limit
    assert counts["states"].get("succeeded", 0) >= 10
    assert refused > 0 and counts["states"].get("succeeded", 0) + refused == 50
    assert len([r for r in srv.requests() if r.method == "POST"]) == counts["states"]["succeeded"]
    client.close()
