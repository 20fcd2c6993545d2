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


def test_validating_a_file_in_the_pool_finds_what_inline_validation_finds(tmp_path) -> None:  # noqa: ANN001
    """Every problem with its line and field (bad JSON, a bad field, a duplicate across blocks), in order; and
    for a valid file, the first chunks' reads equal inline classification."""
    import json

    from producer.reader import validate_file

    jobs = list(generate(SLICE * 5))
    lines = [json.dumps(j) for j in jobs]
    lines[10] = "{not json"
    lines[400] = json.dumps({**jobs[400], "max_tokens": -5})
    lines[900] = json.dumps({**jobs[900], "custom_id": jobs[3]["custom_id"]})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:600]) + "\n\n" + "\n".join(lines[600:]) + "\n")  # and a blank line
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    pool = ClassifierPool(2)
    try:
        inline, pooled = validate_file(bad), validate_file(bad, pool=pool, chunk=300, classify_chunks=2)
        assert [(p.line, p.field, p.message) for p in pooled.problems] == [
            (p.line, p.field, p.message) for p in inline.problems
        ]
        assert [p.line for p in pooled.problems] == [11, 401, 902] and pooled.reads == []
        check = validate_file(good, pool=pool, chunk=300, classify_chunks=2)
        assert (check.jobs, check.problems) == (len(jobs), [])
        assert check.reads == [
            classify_texts([(j["prompt"], j.get("max_tokens")) for j in jobs[i : i + 300]]) for i in (0, 300)
        ]
    finally:
        pool.close()
