"""The Python client of the contract: submit, wait, read results, classify."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sized
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import redis
from sqlalchemy.engine import Engine

from producer import results as results_mod
from producer import store
from producer.queues import QueueMonitor
from producer.reader import collect_jobs
from producer.router import Router
from producer.submit import SubmitReport, Submitter, bulk_mode
from schemas.jobs import InferenceJob, parse_job
from schemas.routing import RouteDecision
from switchyard.db import get_engine
from switchyard.errors import BatchNotFound, InputError, InputProblem, JobNotFound
from switchyard.settings import Settings

log = logging.getLogger(__name__)


class Client:
    """Submit jobs and read their results.

    Configuration comes from the environment (``SWITCHYARD_BROKER_URL``, ``SWITCHYARD_DATABASE_URL``,
    ``SWITCHYARD_CONFIG``) or from keyword arguments, which win.

    The broker and database URLs are required only by the methods that use them (submit, wait, status,
    results), when first called, with a ConfigError naming what is missing: building a Client and
    :meth:`classify` need no services.
    """

    def __init__(
        self, *, broker_url: str | None = None, database_url: str | None = None, settings: Settings | None = None
    ) -> None:
        base = settings or Settings.from_env()
        self.settings = base.with_urls(broker_url or base.broker_url or "", database_url or base.database_url or "")
        self.catalog = self.settings.catalog
        self.last_report: SubmitReport | None = None

    # Connections are made on first use (cached_property): classification alone must not need them.
    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.settings.require_urls()[1])

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.require_urls()[0])

    @cached_property
    def router(self) -> Router:
        if self.settings.broker_url and self.settings.database_url:
            return Router(self.catalog, QueueMonitor(self.redis, self.catalog).wait_s)
        # Without services, as `switchyard classify` routes: no queue depths, so no overflow to another pool.
        return Router(self.catalog)

    @cached_property
    def submitter(self) -> Submitter:
        return Submitter(self.catalog, self.engine, self.redis, self.router)

    # --- classify -------------------------------------------------------------------------------------
    def classify(self, job: dict[str, Any] | InferenceJob) -> RouteDecision:
        """Where the job would go and why, without enqueueing it."""
        return self.router.route(_one(job))

    # --- submit ---------------------------------------------------------------------------------------
    def submit_many(self, jobs: Iterable[dict[str, Any] | InferenceJob], batch: str | None = None) -> str:
        """Validate everything, then record and enqueue; returns the batch name.

        Idempotent per custom_id within a batch: a custom_id the batch already holds is never run again. Without
        ``batch`` the name is derived from the set of custom_ids (``batch-<hash>``), so calling this twice with
        the same jobs (a retried script) reuses the batch and runs nothing twice; a different set of custom_ids
        makes a different batch. A job whose custom_id the batch holds with a different prompt or options is not
        resubmitted either: it is counted in ``last_report.changed`` and logged as a warning. Give a new
        ``batch`` name to run such jobs as they are now.
        """
        size = len(jobs) if isinstance(jobs, Sized) else None
        pool = self.submitter.pool_for(size)
        with bulk_mode():
            try:
                ahead: list[Callable[[], list[Any]]] = []
                classify_ahead = None
                if pool is not None:
                    # Each chunk is classified in the pool as soon as it is validated; nothing is recorded or
                    # enqueued before every job is valid.
                    def classify_ahead(chunk: list[InferenceJob]) -> None:
                        ahead.append(pool.start([(job.text, job.max_tokens) for job in chunk]))

                # Raises InputError listing every problem; nothing enqueued.
                parsed = collect_jobs(jobs, classify_ahead, self.submitter.chunk)
                name = batch or default_batch_name(job.custom_id for job in parsed)
                self.last_report = self.submitter.submit(
                    enumerate(parsed, 1), name, size_hint=len(parsed), pool=pool, ahead=ahead
                )
            finally:
                if pool is not None:
                    pool.close()
        warning = self.last_report.changed_warning()
        if warning:
            log.warning("%s", warning)
        return name

    def submit(self, job: dict[str, Any] | InferenceJob, batch: str | None = None) -> str:
        """Submit one job; returns its job id. Without ``batch``, jobs go to a batch per UTC day."""
        parsed = _one(job)
        name = batch or f"adhoc-{datetime.now(UTC):%Y-%m-%d}"
        report = self.submitter.submit([(0, parsed)], name)
        self.last_report = report
        from sqlalchemy import select

        from schemas.tables import Job

        with self.engine.connect() as conn:
            return str(
                conn.execute(
                    select(Job.id).where(Job.batch_id == report.batch_id, Job.custom_id == parsed.custom_id)
                ).scalar_one()
            )

    # --- read -----------------------------------------------------------------------------------------
    def _batch_id(self, batch: str) -> uuid.UUID:
        found = store.find_batch(self.engine, batch)
        if found is None:
            raise BatchNotFound(f"no batch named {batch!r}")
        return found

    def status(self, batch: str) -> dict[str, Any]:
        return results_mod.batch_counts(self.engine, self._batch_id(batch))

    def wait(self, batch: str, timeout: float | None = 600, poll_s: float = 0.25) -> dict[str, Any]:
        """Block until every job of the batch is final; returns the final counts."""
        batch_id = self._batch_id(batch)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            counts = results_mod.batch_counts(self.engine, batch_id)
            if counts["done"] >= counts["total"]:
                return counts
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch}: {counts['done']}/{counts['total']} done after {timeout}s")
            time.sleep(poll_s)

    def results(self, batch: str) -> Iterator[dict[str, Any]]:
        return results_mod.iter_results(self.engine, self._batch_id(batch))

    def result(self, job_id: str, timeout: float | None = 60, poll_s: float = 0.1) -> dict[str, Any]:
        """The job's result line, waiting up to ``timeout`` seconds for it to finish.

        Raises JobNotFound for an id that names no job, TimeoutError when it is still running at ``timeout``."""
        try:
            jid = uuid.UUID(job_id)
        except ValueError:
            raise JobNotFound(f"no job {job_id!r} (not a job id)") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            line = results_mod.job_line(self.engine, jid)
            if line is None:
                raise JobNotFound(f"no job {job_id!r}")
            if line["switchyard"]["state"] in ("succeeded", "failed", "dead"):
                return line
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {line['switchyard']['state']} after {timeout}s")
            time.sleep(poll_s)

    def close(self) -> None:
        if "redis" in self.__dict__:  # never connected: nothing to close
            self.redis.close()


def default_batch_name(custom_ids: Iterable[str]) -> str:
    """``batch-`` and a hash of the set of custom_ids: the same jobs, in any order, name the same batch (as
    ``switchyard submit`` names a file's batch after its path), so a resubmission runs nothing twice."""
    digest = hashlib.sha256()
    for custom_id in sorted(custom_ids):
        digest.update(custom_id.encode())
        digest.update(b"\0")  # custom_ids may hold anything but NUL: ("a", "bc") and ("ab", "c") differ
    return f"batch-{digest.hexdigest()[:16]}"


def _one(job: dict[str, Any] | InferenceJob) -> InferenceJob:
    from pydantic import ValidationError

    from producer.reader import problems_of

    if isinstance(job, dict) and "custom_id" not in job:
        raise InputError([InputProblem(None, "custom_id", "missing")])
    try:
        return parse_job(job)
    except ValidationError as exc:
        raise InputError(problems_of(exc, None)) from None
