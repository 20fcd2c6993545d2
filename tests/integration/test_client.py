"""The Python client as a user calls it: idempotent resubmission, changed jobs never skipped silently, errors
from the project's tree."""

from __future__ import annotations

import logging
import uuid

import pytest

from switchyard.errors import JobNotFound, NotFound, SwitchyardError


def _jobs(n: int, text: str = "Summarise note {i}.") -> list[dict[str, object]]:
    return [{"custom_id": f"doc-{i}", "prompt": text.format(i=i), "max_tokens": 16} for i in range(n)]


def test_an_unknown_job_id_raises_job_not_found(client) -> None:  # noqa: ANN001
    for job_id in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(JobNotFound) as info:
            client.result(job_id, timeout=0)
        assert isinstance(info.value, NotFound) and isinstance(info.value, SwitchyardError)
        assert job_id in str(info.value)


def test_submit_many_twice_without_a_batch_name_runs_nothing_twice(client) -> None:  # noqa: ANN001
    first = client.submit_many(_jobs(4))
    assert client.last_report.submitted == 4
    again = client.submit_many(list(reversed(_jobs(4))))  # same custom_ids, any order: the same batch
    assert again == first
    assert (client.last_report.submitted, client.last_report.skipped) == (0, 4)
    other = client.submit_many(_jobs(5))  # a different set of custom_ids is a different batch
    assert other != first and client.last_report.submitted == 5


def test_a_changed_prompt_under_a_recorded_custom_id_is_reported_not_skipped_silently(
        client, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    batch = client.submit_many(_jobs(4), batch="edited")
    changed = _jobs(4)
    changed[1]["prompt"] = "Translate note 1."
    with caplog.at_level(logging.WARNING):
        assert client.submit_many(changed, batch=batch) == batch
    report = client.last_report
    assert (report.submitted, report.skipped, report.changed) == (0, 4, 1)
    assert report.changed_examples == ["doc-1"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1 job(s)" in m and "doc-1" in m and "not resubmitted" in m for m in warned), warned
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        client.submit_many(_jobs(4), batch=batch)  # unchanged: nothing to warn about
    assert client.last_report.changed == 0
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
