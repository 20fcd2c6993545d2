"""Results a worker generated but could not write, kept for the job's retry.

When the database fails just as a job's result is written, the Celery task retries the job (workers/tasks.py).
Without this, the retry would call the engine or the provider again: a commercial call paid twice, a GPU job run
twice. With it, a retry that lands on the same worker process writes the result it already has. A retry that
lands elsewhere runs the job again, as before; its entry here ages out.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

from workers.engines.base import GenerationResult

#: Entries kept at most (oldest dropped first): an outage stops at most a worker's concurrency of jobs at the
#: moment of writing, but retries that went to other workers never come back for theirs.
MAX_ENTRIES = 10_000


class UnwrittenResults:
    """Job id -> (result, seconds the generation took), shared by a worker's task threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[uuid.UUID, tuple[GenerationResult, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def keep(self, job_id: uuid.UUID, result: GenerationResult, elapsed_s: float) -> None:
        with self._lock:
            self._entries[job_id] = (result, elapsed_s)
            self._entries.move_to_end(job_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def take(self, job_id: uuid.UUID) -> tuple[GenerationResult, float] | None:
        with self._lock:
            return self._entries.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._entries)
