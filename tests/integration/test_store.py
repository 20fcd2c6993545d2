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
