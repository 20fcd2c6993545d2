"""What the bulk path writes to Postgres is exactly what the user submitted (COPY rows are formatted by hand)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.tables import Job
from switchyard.db import get_engine

AWKWARD = "tab\there, new\nline, CR\r, backslash \\ and \\N, quote \" ' , unicode é 漢字 🚀"


def test_awkward_text_and_metadata_round_trip_through_copy(client, db: str) -> None:
    jobs = [
        {
            "custom_id": f"odd\t{i}\\N",
            "prompt": f"{AWKWARD} #{i}",
            "system": AWKWARD,
            "tenant": "legal\tdept\\x",
            "metadata": {"k": AWKWARD, "big": 2**70, "nested": [1, None, True, {"x": "\\"}]},
            "max_tokens": 5,
        }
        for i in range(3)
    ]
    client.submit_many(jobs, batch="awkward")
    with Session(get_engine(db)) as session:
        rows = {r.custom_id: r for r in session.scalars(select(Job).where(Job.custom_id.like("odd%")))}
    assert sorted(rows) == sorted(j["custom_id"] for j in jobs)
    for job in jobs:
        row = rows[job["custom_id"]]
        assert row.tenant == job["tenant"]
        assert row.job_metadata == job["metadata"]
        assert row.request["messages"] == [
            {"role": "system", "content": AWKWARD},
            {"role": "user", "content": job["prompt"]},
        ]
        assert row.request["max_tokens"] == 5 and row.state == "queued" and row.parent_id is None
        assert 0.0 <= row.complexity <= 1.0 and row.route_reason


def test_a_big_submission_classified_in_the_pool_routes_like_one_classified_inline(client, db: str) -> None:
    """Above MIN_JOBS_FOR_POOL, classification runs in classifier processes, started while the input is still
    being validated: every job must be recorded with the decision the router makes inline."""
    from producer.classify_pool import MIN_JOBS_FOR_POOL
    from switchyard.workload import generate

    jobs = list(generate(MIN_JOBS_FOR_POOL + 321))  # two full chunks and more, and a short last one
    client.submit_many(jobs, batch="big")
    with Session(get_engine(db)) as session:
        recorded = {
            r.custom_id: r for r in session.scalars(select(Job).where(Job.batch_id == client.last_report.batch_id))
        }
    assert len(recorded) == len(jobs) and client.last_report.submitted == len(jobs)
    for job in jobs[:: len(jobs) // 400]:
        decision = client.classify(job)
        row = recorded[job["custom_id"]]
        assert (row.model, row.route_rule, row.contains_pii) == (decision.model, decision.rule, decision.contains_pii)
        assert row.complexity == decision.complexity and row.expected_output_tokens == decision.expected_output_tokens


def test_a_big_submission_with_one_bad_line_enqueues_nothing(client, db: str, clean_redis: str) -> None:
    import redis

    from producer.classify_pool import MIN_JOBS_FOR_POOL
    from switchyard.errors import InputError
    from switchyard.workload import generate

    jobs = list(generate(MIN_JOBS_FOR_POOL + 10))
    jobs[-3]["max_tokens"] = -1
    try:
        client.submit_many(jobs, batch="bad-big")
    except InputError as exc:
        assert [(p.line, p.field) for p in exc.problems] == [(len(jobs) - 2, "max_tokens")]
    else:
        raise AssertionError("the bad line was accepted")
    with Session(get_engine(db)) as session:
        assert session.scalars(select(Job).where(Job.custom_id == jobs[0]["custom_id"])).first() is None
    assert redis.Redis.from_url(clean_redis).dbsize() == 0


def test_a_resubmission_that_overlaps_records_and_enqueues_only_the_new_jobs(client, db: str,
                                                                            clean_redis: str) -> None:
    """A chunk mixing recorded and new custom_ids: the direct COPY is refused, the fallback skips the recorded
    ones, and every job is recorded and enqueued exactly once."""
    import redis as redis_lib

    first = [{"custom_id": f"doc-{i}", "prompt": f"Summarise note {i}."} for i in range(0, 6)]
    again = [{"custom_id": f"doc-{i}", "prompt": f"Summarise note {i}."} for i in range(3, 10)]
    client.submit_many(first, batch="overlap")
    client.submit_many(again, batch="overlap")
    report = client.last_report
    assert (report.submitted, report.skipped) == (4, 3)
    with Session(get_engine(db)) as session:
        rows = list(session.scalars(select(Job).where(Job.batch_id == report.batch_id)))
    assert sorted(r.custom_id for r in rows) == sorted(f"doc-{i}" for i in range(10))
    assert all(r.enqueued_at is not None for r in rows)
    r = redis_lib.Redis.from_url(clean_redis)
    queued = sum(r.llen(k) for k in r.keys("*") if r.type(k) == b"list")
    assert queued == 10  # one message per job, none twice


def test_a_big_file_classified_while_it_is_validated_routes_like_inline(client, db: str, tmp_path) -> None:
    """``switchyard submit``: the first chunks are classified in the pool during the validation pass, the rest
    during submission; every job is recorded once, with the decision the router makes inline."""
    import json

    from producer.classify_pool import MIN_JOBS_FOR_POOL
    from producer.submit_file import AHEAD_CHUNKS, submit_file
    from switchyard.workload import generate

    chunk = 500
    jobs = list(generate(max(MIN_JOBS_FOR_POOL, (AHEAD_CHUNKS + 3) * chunk) + 77))
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    report = submit_file(client.settings, str(path), batch="big-file", progress=False, chunk=chunk)
    assert report.submitted == len(jobs)
    with Session(get_engine(db)) as session:
        recorded = {r.custom_id: r for r in session.scalars(select(Job).where(Job.batch_id == report.batch_id))}
    assert len(recorded) == len(jobs)
    for line, job in list(enumerate(jobs, 1))[:: len(jobs) // 300]:
        decision = client.classify(job)
        row = recorded[job["custom_id"]]
        assert row.seq == line
        assert (row.model, row.route_rule, row.contains_pii) == (decision.model, decision.rule, decision.contains_pii)
        assert row.complexity == decision.complexity and row.expected_output_tokens == decision.expected_output_tokens


def test_a_big_file_with_a_bad_last_line_enqueues_nothing(client, db: str, clean_redis: str, tmp_path) -> None:
    import json

    import pytest
    import redis

    from producer.classify_pool import MIN_JOBS_FOR_POOL
    from producer.submit_file import submit_file
    from switchyard.errors import InputError
    from switchyard.workload import generate

    jobs = list(generate(MIN_JOBS_FOR_POOL + 1000))
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs) + '{"custom_id": "x", "prompt": ""}\n')
    with pytest.raises(InputError) as refused:
        submit_file(client.settings, str(path), batch="bad-file", progress=False, chunk=500)
    assert [(p.line, p.field) for p in refused.value.problems] == [(len(jobs) + 1, "prompt")]
    with Session(get_engine(db)) as session:
        assert session.scalars(select(Job).where(Job.custom_id == jobs[0]["custom_id"])).first() is None
    assert redis.Redis.from_url(clean_redis).dbsize() == 0
