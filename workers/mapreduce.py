"""Combining the parts of a split document: when the last part succeeds, enqueue the combining job; when that
succeeds, the parent job gets one result whose usage is the sum of its parts. Each part keeps its own ledger
entry (they were real calls); the parent has none, so nothing is billed twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from producer.chunking import reduce_messages
from schemas.tables import Job, Result
from switchyard.catalog import Catalog
from switchyard.tokens import estimate_messages_tokens
from workers.recorder import Claim

log = logging.getLogger(__name__)

Publish = Callable[[uuid.UUID, str, int], None]
COMBINE_SUFFIX = "#combine"


class MapReduce:
    def __init__(self, engine: Engine, catalog: Catalog, publish: Publish, worker_name: str) -> None:
        self.engine = engine
        self.catalog = catalog
        self.publish = publish
        self.worker_name = worker_name

    def _parent(self, conn: Any, parent_id: uuid.UUID) -> Any:
        return conn.execute(select(Job.id, Job.batch_id, Job.custom_id, Job.model, Job.chunk_count, Job.request,
                                   Job.state, Job.priority, Job.tenant, Job.seq, Job.route_rule, Job.route_reason,
                                   Job.contains_pii, Job.pii_types)
                            .where(Job.id == parent_id).with_for_update()).first()

    def part_succeeded(self, claim: Claim) -> None:
        assert claim.parent_id is not None
        self._advance(claim.parent_id, claim.chunk_index)

    def part_delivered_again(self, job_id: uuid.UUID) -> None:
        """A delivery of a job that is already final. If it is a part that succeeded, move its document on now:
        its worker may have died, or the database failed, between writing the part's result and this step, and
        nothing else would (the parent never goes to the broker). Idempotent, like part_succeeded."""
        with self.engine.connect() as conn:
            part = conn.execute(select(Job.parent_id, Job.chunk_index, Job.state).where(Job.id == job_id)).first()
        if part is not None and part.parent_id is not None and part.state == "succeeded":
            self._advance(part.parent_id, part.chunk_index)

    def _advance(self, parent_id: uuid.UUID, chunk_index: int | None) -> None:
        """After a part or the combining job succeeded: enqueue the combining job once every part is done, or
        finish the parent once the combining job is."""
        combine_id: uuid.UUID | None = None
        with self.engine.begin() as conn:
            parent = self._parent(conn, parent_id)
            if parent is None or parent.state != "running":
                return
            if chunk_index == parent.chunk_count:
                self._finish_parent(conn, parent)
                return
            parts = conn.execute(
                select(Job.chunk_index, Result.body).join(Result, Result.job_id == Job.id)
                .where(Job.parent_id == parent.id, Job.chunk_index < parent.chunk_count, Job.state == "succeeded")
                .order_by(Job.chunk_index)).all()
            if len(parts) < parent.chunk_count:
                return
            answers = [p.body["choices"][0]["message"]["content"] for p in parts]
            spec = self.catalog.model(parent.model)
            request = dict(parent.request)
            max_tokens = int(request.get("max_tokens") or spec.max_output_tokens)
            system = [m for m in request["messages"] if m.get("role") in ("system", "developer")]
            task = request.get("task_head", "")
            messages = reduce_messages(system, task, answers, spec.context_window, max_tokens)
            combine_id = uuid.uuid4()
            inserted = conn.execute(insert(Job).values(
                id=combine_id, batch_id=parent.batch_id, custom_id=f"{parent.custom_id}{COMBINE_SUFFIX}",
                seq=parent.seq, state="queued", model=parent.model, requested_model=parent.model,
                route_rule=parent.route_rule, route_reason=f"{parent.route_reason}; combining parts",
                contains_pii=parent.contains_pii, pii_types=parent.pii_types, complexity=0.0,
                expected_output_tokens=max_tokens, prompt_tokens_estimate=estimate_messages_tokens(messages),
                priority=parent.priority, tenant=parent.tenant,
                request={"messages": messages, "max_tokens": max_tokens}, attempts=0, parent_id=parent.id,
                chunk_index=parent.chunk_count, enqueued_at=func.now(),
            ).on_conflict_do_nothing(constraint="uq_jobs_batch_custom_id").returning(Job.id)).first()
            if inserted is None:
                return  # another delivery already created it
        self.publish(combine_id, parent.model, parent.priority)
        log.info("job %s: all %s parts done, combining", parent_id, parent.chunk_count)

    def _finish_parent(self, conn: Any, parent: Any) -> None:
        rows = conn.execute(select(Result.body, Result.simulated, Result.request_id, Result.backend, Job.chunk_index)
                            .join(Job, Job.id == Result.job_id).where(Job.parent_id == parent.id)).all()
        final = max(rows, key=lambda r: r.chunk_index)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for r in rows:
            for key in usage:
                usage[key] += int((r.body or {}).get("usage", {}).get(key, 0))
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        body = dict(final.body)
        body["usage"] = usage  # the whole document's usage: every part plus the combining call
        conn.execute(insert(Result).values(
            job_id=parent.id, model=parent.model, backend=final.backend, status_code=200,
            request_id=final.request_id, body=body, simulated=any(r.simulated for r in rows),
            worker=self.worker_name, attempt=1).on_conflict_do_nothing(index_elements=[Result.job_id]))
        conn.execute(update(Job).where(Job.id == parent.id).values(state="succeeded", finished_at=func.now()))

    def part_failed(self, claim: Claim, code: str, message: str) -> None:
        """One part failed for good: the document cannot be answered whole."""
        assert claim.parent_id is not None
        with self.engine.begin() as conn:
            parent = self._parent(conn, claim.parent_id)
            if parent is None or parent.state != "running":
                return
            text = f"part {(claim.chunk_index or 0) + 1} of {parent.chunk_count} failed: {message}"[:4000]
            conn.execute(insert(Result).values(
                job_id=parent.id, model=parent.model, backend="mapreduce", status_code=500, request_id="",
                body=None, error_code=code, error_message=text, simulated=False, worker=self.worker_name,
                attempt=1).on_conflict_do_nothing(index_elements=[Result.job_id]))
            conn.execute(update(Job).where(Job.id == parent.id)
                         .values(state="failed", finished_at=func.now(), error_code=code, error_message=text))
