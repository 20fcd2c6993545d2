"""Classification on every core, for bulk submissions.

PII scanning and complexity scoring are pure CPU work on each job's text; a big submission spreads them over
a pool of processes (spawned, not forked: the producer holds database and Redis connections and threads) while
the parent records and publishes. Small submissions classify inline: a pool costs a second to start.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from producer import complexity, output_length, pii

#: Below this many jobs a submission classifies inline.
MIN_JOBS_FOR_POOL = 5000
#: Jobs per task sent to a pool process (amortises pickling and scheduling).
SLICE = 250

Item = tuple[str, int | None]  # (text, max_tokens)
Read = tuple[bool, tuple[str, ...], float, int]  # (contains_pii, pii_types, complexity, expected_output)


def classify_texts(items: Sequence[Item]) -> list[Read]:
    out: list[Read] = []
    for text, max_tokens in items:
        report = pii.scan(text)
        out.append(
            (
                report.contains_pii,
                tuple(report.types),
                complexity.complexity_score(text),
                output_length.expected_output_tokens(text, max_tokens),
            )
        )
    return out


class ClassifierPool:
    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes or max(1, (os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None

    def warm(self) -> None:
        """Start the processes now, without waiting: they spawn, import and compile their detectors while the
        caller validates its input (about a second that would otherwise come before the first chunk)."""
        if self.processes < 2:
            return
        pool = self._executor()
        for _ in range(self.processes):
            pool.submit(classify_texts, [("warm up", None)])

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def classify(self, items: Sequence[Item]) -> list[Read]:
        return self.start(items)()

    def start(self, items: Sequence[Item]) -> Callable[[], list[Read]]:
        """Begin classifying ``items`` in the pool; the returned function waits for the reads, in order.

        The submitter starts the next chunk here before recording the current one, so the pool and the
        parent's database and broker work overlap.
        """
        if self.processes < 2 or len(items) < SLICE * 2:
            reads = classify_texts(items)
            return lambda: reads
        pool = self._executor()
        futures = [pool.submit(classify_texts, items[i : i + SLICE]) for i in range(0, len(items), SLICE)]
        return lambda: [read for f in futures for read in f.result()]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
