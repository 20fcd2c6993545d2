"""The Celery task: a thin transport layer over :class:`workers.executor.Executor`."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from celery import Celery, Task
from celery.exceptions import Reject
from sqlalchemy.exc import DBAPIError

from celeryconfig import RUN_JOB_TASK
from switchyard.db import is_transient
from workers.executor import Executor

#: The longest wait before a job retries after a database error: an outage is noticed within this.
DB_RETRY_MAX_S = 30.0


def db_retry_countdown(retries: int, visibility_s: float) -> float:
    """Seconds before the ``retries``-th retry after a transient database error: 1, 2, 4 ... up to
    DB_RETRY_MAX_S, jittered by +-25% so that the jobs an outage stopped do not all return at once. Kept under
    a third of the visibility timeout: a retry waits in the worker as an unacknowledged message, and one held
    past that timeout would be delivered a second time."""
    base = min(2.0 ** min(retries, 10), DB_RETRY_MAX_S, visibility_s / 3)
    return base * random.uniform(0.75, 1.25)


def _visibility_s(task: Task) -> float:
    return float((task.app.conf.broker_transport_options or {}).get("visibility_timeout", 3600))


def register(app: Celery, executor: Callable[[], Executor], on_engine_dead: Callable[[str], None]) -> Task:
    """Register ``switchyard.run_job`` on ``app``; ``executor()`` returns the process's warm executor."""

    @app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None,
              ignore_result=True)
    def run_job(self: Task, job_id: str, after_db_error: bool = False) -> str:
        # A retry after a database error may find the job still marked running under this lineage's own claim
        # (claimed, then its result could not be written): like a redelivery, it takes the job over at once
        # instead of waiting out the lease for the reaper.
        redelivered = after_db_error or bool((self.request.delivery_info or {}).get("redelivered"))
        try:
            action = executor().execute(uuid.UUID(job_id), self.request.retries, redelivered=redelivered)
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            # The database is restarting, failing over or unreachable: run it again once it is back. Backing
            # off keeps a long outage from turning every queued job into a retry a second.
            raise self.retry(countdown=db_retry_countdown(self.request.retries, _visibility_s(self)),
                             kwargs={"after_db_error": True}, max_retries=None) from exc
        if action.kind == "retry":
            # Not autoretry_for: that ignores Retry-After. The countdown honours the provider's wait.
            raise self.retry(countdown=action.countdown, max_retries=None)
        if action.kind == "requeue":
            on_engine_dead(action.detail)
            # Back to the head of the queue now: another worker (or this one, restarted) runs it.
            raise Reject(action.detail, requeue=True)
        return action.kind

    return run_job
