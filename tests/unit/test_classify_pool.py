"""The classifier processes give the same reads as classifying inline, and fail loudly when one dies."""

from __future__ import annotations

import pytest

from producer.classify_pool import SLICE, ClassifierPool, classify_texts
from switchyard.workload import generate


def _items(n: int) -> list[tuple[str, int | None]]:
    return [(job["prompt"], job.get("max_tokens")) for job in generate(n)]


def test_pool_reads_equal_inline_reads_in_order() -> None:
    items = _items(SLICE * 3 + 17)  # several tasks per process, and a short last one
    pool = ClassifierPool(2)
    try:
        reads = pool.start(items)  # returns at once; the processes work meanwhile
        assert reads() == classify_texts(items)
        children = [c.proc for c in pool._children]
        assert len(children) == 2 and all(p.poll() is None for p in children)
    finally:
        pool.close()
    assert all(p.poll() is not None for p in children)  # nothing left running


def test_a_dead_classifier_process_fails_the_reads_instead_of_hanging() -> None:
    items = _items(SLICE * 4)
    pool = ClassifierPool(2)
    try:
        pool.warm()
        for child in pool._children:
            child.proc.kill()
        with pytest.raises(RuntimeError, match="classifier process failed"):
            pool.start(items)()
    finally:
        pool.close()
