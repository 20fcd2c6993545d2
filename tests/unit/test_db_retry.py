"""Which database errors a job retries, and how long it waits before each retry."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from switchyard.db import is_transient
from workers.tasks import DB_RETRY_MAX_S, db_retry_countdown


def test_outages_and_conflicts_retry_but_a_wrong_statement_does_not() -> None:
    down = OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))
    deadlock = OperationalError("UPDATE", {}, psycopg.errors.DeadlockDetected("deadlock detected"))
    assert is_transient(down) and is_transient(deadlock)
    assert not is_transient(IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key")))
    assert not is_transient(ProgrammingError("SELECT", {}, psycopg.errors.UndefinedTable("no such table")))
    dropped = ProgrammingError("SELECT", {}, psycopg.OperationalError("gone"), connection_invalidated=True)
    assert is_transient(dropped)  # SQLAlchemy saw the connection die, whatever the class


@pytest.mark.parametrize("retries", range(0, 40))
def test_the_wait_doubles_up_to_a_cap_with_jitter(retries: int) -> None:
    waits = [db_retry_countdown(retries, visibility_s=3600) for _ in range(200)]
    base = min(2.0**retries, DB_RETRY_MAX_S)
    assert all(0.75 * base <= w <= 1.25 * base for w in waits)
    assert max(waits) - min(waits) > 0.1 * base  # jittered: an outage's jobs do not all return at once


def test_the_wait_stays_well_under_the_visibility_timeout() -> None:
    # A retry waits in the worker as an unacknowledged message; past the visibility timeout it would be
    # delivered twice.
    assert all(db_retry_countdown(r, visibility_s=6) <= 2.5 for r in range(20))
