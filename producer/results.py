"""Reading outcomes: batch status counts and result lines in the contract's format."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from schemas.tables import FINAL_STATES, Job, LedgerEntry, Result


def batch_counts(engine: Engine, batch_id: uuid.UUID) -> dict[str, Any]:
    """Counts per state and per model (top-level jobs only; chunks of split documents are internal)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Job.model, Job.state, func.count())
            .where(Job.batch_id == batch_id, Job.parent_id.is_(None))
            .group_by(Job.model, Job.state)
        ).all()
    states: dict[str, int] = {}
    models: dict[str, dict[str, int]] = {}
    for model, state, n in rows:
        states[state] = states.get(state, 0) + n
        models.setdefault(model, {})[state] = n
    total = sum(states.values())
    done = sum(states.get(s, 0) for s in FINAL_STATES)
    return {"total": total, "done": done, "states": states, "models": models}


def _parts_totals() -> Any:
    """Per split document: the sums over its parts' ledger entries (the parent has no entry of its own)."""
    return (
        select(
            Job.parent_id.label("pid"),
            func.sum(LedgerEntry.cost_usd).label("cost"),
            func.sum(LedgerEntry.input_tokens).label("input"),
            func.sum(LedgerEntry.output_tokens).label("output"),
            func.bool_or(LedgerEntry.simulated).label("simulated"),
        )
        .join(LedgerEntry, LedgerEntry.job_id == Job.id)
        .where(Job.parent_id.is_not(None))
        .group_by(Job.parent_id)
        .subquery()
    )


def _line(job: Job, result: Result | None, ledger: LedgerEntry | None, parts: Any = None) -> dict[str, Any]:
    ok = job.state == "succeeded" and result is not None and result.body is not None
    error = None
    if not ok:
        if job.state in FINAL_STATES:
            error = {
                "code": (result.error_code if result else None) or job.error_code or "failed",
                "message": (result.error_message if result else None) or job.error_message or "",
            }
        else:
            error = {"code": "not_finished", "message": f"job is {job.state}"}
    info: dict[str, Any] = {
        "model": job.model,
        "route_reason": job.route_reason,
        "route_rule": job.route_rule,
        "cost_usd": float(ledger.cost_usd) if ledger else 0.0,
        "latency_ms": ledger.latency_ms if ledger else None,
        "simulated": bool(result.simulated) if result else False,
        "state": job.state,
        "queue_wait_ms": ledger.queue_wait_ms if ledger else None,
        "inference_ms": ledger.inference_ms if ledger else None,
        "prompt_tokens": ledger.input_tokens if ledger else None,
        "completion_tokens": ledger.output_tokens if ledger else None,
        "attempts": job.attempts,
        "metadata": job.job_metadata,
        "contains_pii": job.contains_pii,
        "tenant": job.tenant,
    }
    if job.chunk_count:
        info["chunks"] = job.chunk_count
        if parts is not None and parts[0] is not None:
            info.update(cost_usd=float(parts[0]), prompt_tokens=int(parts[1]), completion_tokens=int(parts[2]))
        if job.finished_at and job.enqueued_at:
            info["latency_ms"] = int((job.finished_at - job.enqueued_at).total_seconds() * 1000)
    return {
        "id": str(job.id),
        "custom_id": job.custom_id,
        "response": {"status_code": result.status_code, "request_id": result.request_id, "body": result.body}
        if ok and result
        else None,
        "error": error,
        "switchyard": info,
    }


def _query():  # type: ignore[no-untyped-def]
    parts = _parts_totals()
    return (
        select(Job, Result, LedgerEntry, parts.c.cost, parts.c.input, parts.c.output)
        .outerjoin(Result, Result.job_id == Job.id)
        .outerjoin(LedgerEntry, LedgerEntry.job_id == Job.id)
        .outerjoin(parts, parts.c.pid == Job.id)
    )


def iter_results(engine: Engine, batch_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    """Every top-level job of the batch in input order, streamed (server-side cursor)."""
    stmt = (
        _query()
        .where(Job.batch_id == batch_id, Job.parent_id.is_(None))
        .order_by(Job.seq, Job.custom_id)
        .execution_options(yield_per=2000)
    )
    with Session(engine) as session:
        for job, result, ledger, *parts in session.execute(stmt):
            yield _line(job, result, ledger, parts)


def job_line(engine: Engine, job_id: uuid.UUID) -> dict[str, Any] | None:
    with Session(engine) as session:
        row = session.execute(_query().where(Job.id == job_id)).first()
        return _line(row[0], row[1], row[2], row[3:]) if row else None
