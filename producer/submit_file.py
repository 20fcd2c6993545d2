"""``switchyard submit FILE``: validate the whole file (streaming), then submit it (streaming), with progress.

Memory stays bounded whatever the file size: the validation pass keeps only custom_ids and problems, and the
submission pass holds one chunk of jobs at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import redis

from producer.classify_pool import MIN_JOBS_FOR_POOL, ClassifierPool
from producer.queues import QueueMonitor
from producer.reader import iter_file_jobs, validate_file
from producer.router import Router
from producer.submit import SubmitReport, Submitter, bulk_mode
from schemas.jobs import InferenceJob
from switchyard.db import get_engine
from switchyard.errors import InputError
from switchyard.settings import Settings


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    )


#: Chunks classified during the validation pass, at most: their reads wait for the submission pass in memory
#: (and their texts in the pool's pipes), so the number is bounded. About what the classifier processes get
#: through while the parent validates.
AHEAD_CHUNKS = 16


class _ClassifyAhead:
    """Starts the classifier pool once the validation pass has seen enough jobs for one, then classifies the
    first chunks while validation goes on (the pool would otherwise idle until the submission pass)."""

    def __init__(self, submitter: Submitter) -> None:
        self.submitter = submitter
        self.pool: ClassifierPool | None = None
        self.waiting: list[list[InferenceJob]] = []  # chunks seen before the pool was worth starting
        self.started: list[Callable[[], list[Any]]] = []

    def __call__(self, chunk: list[InferenceJob]) -> bool:
        self.waiting.append(chunk)
        if self.pool is None:
            if len(self.waiting) * len(chunk) < MIN_JOBS_FOR_POOL:
                return True
            self.pool = ClassifierPool(self.submitter.processes)
        for waiting in self.waiting:
            self.started.append(self.pool.start([(job.text, job.max_tokens) for job in waiting]))
        self.waiting = []
        return len(self.started) < AHEAD_CHUNKS


def submit_file(settings: Settings, path: str, *, batch: str, progress: bool = True, chunk: int = 2000) -> SubmitReport:
    broker, database = settings.require_urls()
    size = os.path.getsize(path)
    client = redis.Redis.from_url(broker)
    router = Router(settings.catalog, QueueMonitor(client, settings.catalog).wait_s)
    submitter = Submitter(settings.catalog, get_engine(database), client, router, chunk=chunk)
    ahead = _ClassifyAhead(submitter)
    try:
        with _progress(progress) as bar, bulk_mode():
            task = bar.add_task("validating", total=size) if bar else None
            check = validate_file(
                path, progress=(lambda n: bar.advance(task, n)) if bar else None, on_chunk=ahead, chunk=chunk
            )
            if check.problems:
                raise InputError(check.problems)
            task2 = bar.add_task("submitting", total=check.jobs) if bar else None
            return submitter.submit(
                iter_file_jobs(path),
                batch,
                source=os.path.abspath(path),
                progress=(lambda n: bar.advance(task2, n)) if bar else None,
                size_hint=check.jobs,
                pool=ahead.pool,
                ahead=ahead.started,
            )
    finally:
        if ahead.pool is not None:
            ahead.pool.close()
        client.close()
