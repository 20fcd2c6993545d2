"""``switchyard submit FILE``: validate the whole file (streaming), then submit it (streaming), with progress.

Memory stays bounded whatever the file size: the validation pass keeps only custom_ids and problems, and the
submission pass holds one chunk of jobs at a time.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any

import redis

from producer.queues import QueueMonitor
from producer.reader import iter_file_jobs, validate_file
from producer.router import Router
from producer.submit import SubmitReport, Submitter, bulk_gc
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


def submit_file(settings: Settings, path: str, *, batch: str, progress: bool = True, chunk: int = 2000) -> SubmitReport:
    broker, database = settings.require_urls()
    size = os.path.getsize(path)
    with _progress(progress) as bar, bulk_gc():
        task = bar.add_task("validating", total=size) if bar else None
        check = validate_file(path, progress=(lambda n: bar.advance(task, n)) if bar else None)
        if check.problems:
            raise InputError(check.problems)
        client = redis.Redis.from_url(broker)
        try:
            router = Router(settings.catalog, QueueMonitor(client, settings.catalog).wait_s)
            submitter = Submitter(settings.catalog, get_engine(database), client, router, chunk=chunk)
            task2 = bar.add_task("submitting", total=check.jobs) if bar else None
            return submitter.submit(
                iter_file_jobs(path),
                batch,
                source=os.path.abspath(path),
                progress=(lambda n: bar.advance(task2, n)) if bar else None,
                size_hint=check.jobs,
            )
        finally:
            client.close()
