"""``switchyard submit FILE``: validate the whole file (streaming), then submit it (streaming), with progress.

Memory stays bounded whatever the file size: the validation pass keeps only custom_ids and problems, and the
submission pass holds one chunk of jobs at a time.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import Any

import redis

from producer.classify_pool import MIN_JOBS_FOR_POOL, ClassifierPool
from producer.queues import QueueMonitor
from producer.reader import iter_file_jobs, validate_file
from producer.router import Router
from producer.submit import SubmitReport, Submitter, bulk_mode
from switchyard.db import get_engine
from switchyard.errors import InputError
from switchyard.settings import Settings


def _progress(enabled: bool) -> Any:
    """Bars on stderr, and only when it is a terminal: stdout carries the batch id (``B=$(switchyard submit
    F)``), and a log file or a CI capture wants no bar frames."""
    if not enabled or not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    )


#: Chunks classified during the validation pass (which runs in the classifier processes too), at most: their
#: reads wait in memory for the submission pass, so the number is bounded.
AHEAD_CHUNKS = 16


def _lines_in(path: str) -> int:
    """Newlines in the file (a few ms per 100 MB): whether its validation is worth the classifier pool."""
    with open(path, "rb") as stream:
        return sum(block.count(b"\n") for block in iter(lambda: stream.read(1 << 20), b""))


def submit_file(settings: Settings, path: str, *, batch: str, progress: bool = True, chunk: int = 2000) -> SubmitReport:
    broker, database = settings.require_urls()
    size = os.path.getsize(path)
    client = redis.Redis.from_url(broker)
    router = Router(settings.catalog, QueueMonitor(client, settings.catalog).wait_s)
    submitter = Submitter(settings.catalog, get_engine(database), client, router, chunk=chunk)
    # A big file is validated in the classifier processes, which classify its first chunks on the way; the
    # submission pass then has them classify the rest.
    pool = ClassifierPool(submitter.processes) if _lines_in(path) >= MIN_JOBS_FOR_POOL else None
    try:
        with _progress(progress) as bar, bulk_mode():
            task = bar.add_task("validating", total=size) if bar else None
            check = validate_file(
                path,
                progress=(lambda n: bar.advance(task, n)) if bar else None,
                pool=pool,
                chunk=chunk,
                classify_chunks=AHEAD_CHUNKS,
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
                pool=pool,
                ahead=[(lambda reads=reads: reads) for reads in check.reads],
            )
    finally:
        if pool is not None:
            pool.close()
        client.close()
