"""Job ids made in bulk are real, distinct version-4 UUIDs in their canonical text form."""

from __future__ import annotations

import uuid

from producer.store import new_job_ids


def test_bulk_job_ids_are_distinct_canonical_version_4_uuids() -> None:
    ids = new_job_ids(5000)
    assert len(ids) == 5000 and len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # what PostgreSQL and the broker messages see


def test_no_ids_for_an_empty_chunk() -> None:
    assert new_job_ids(0) == []
