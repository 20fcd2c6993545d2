"""The Celery task: a thin transport layer over :class:`workers.executor.Executor`."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from celery import Celery, Task
from celery.exceptions import Reject
from sqlalchemy.exc import DBAPIError

from celeryconfig import RUN_JOB_TASK
from workers.executor import Executor


def register(app: Celery, executor: Callable[[], Executor], on_engine_dead: Callable[[str], None]) -> Task:
    """Register ``switchyard.run_job`` on ``app``; ``executor()`` returns the process's warm executor."""

    @app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None,
              ignore_result=True)
    def run_job(self: Task, job_id: str) -> str:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        try:
            action = executor().execute(uuid.UUID(job_id), self.request.retries, redelivered=redelivered)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # The database restarted or the connection dropped: the pool is already replaced; run it again.
            raise self.retry(countdown=1.0, max_retries=None) from exc
        if action.kind == "retry":
            # Not autoretry_for: that ignores Retry-After. The countdown honours the provider's wait.
            raise self.retry(countdown=action.countdown, max_retries=None)
        if action.kind == "requeue":
            on_engine_dead(action.detail)
            # Back to the head of the queue now: another worker (or this one, restarted) runs it.
            raise Reject(action.detail, requeue=True)
        return action.kind

    return run_job
