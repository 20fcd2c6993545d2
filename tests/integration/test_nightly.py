"""Nightly submissions: files dropped into the watched folder are submitted once each, by a scan and by the beat."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery.schedules import crontab
from sqlalchemy import select

from producer.queues import queue_depths
from schemas.tables import Batch, Job, NightlySubmission
from switchyard.catalog import NightlySpec
from switchyard.cli import main
from switchyard.db import get_engine
from switchyard.errors import ConfigError
from switchyard.nightly import NIGHTLY_QUEUE, NIGHTLY_TASK, NightlyOutcome, beat_schedule, build_app, scan_and_submit
from switchyard.settings import Settings
from tests.workerproc import reap, worker_env

MODEL_QUEUES = ["llama-3-70b", "mistral-7b", "gpt-4-turbo", "claude-3-opus"]


def _lines(*ids: str) -> str:
    return "".join(json.dumps({"custom_id": i, "prompt": "What is 2+2?", "max_tokens": 8}) + "\n" for i in ids)


def _drop(path: Path, text: str, *, age_s: float = 60.0) -> Path:
    """Write a finished file the way producers should: under a .part name, then renamed into place."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def _config(tmp_path: Path, inbox: Path, **nightly: object) -> Path:
    values = {"enabled": True, "watch": str(inbox / "*.jsonl"), "settle_s": 1, **nightly}
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
    path = tmp_path / "switchyard.toml"
    path.write_text(f"[nightly]\n{body}\n")
    return path


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def settings(db: str, clean_redis: str, tmp_path: Path, inbox: Path) -> Settings:
    return Settings.from_env({"SWITCHYARD_BROKER_URL": clean_redis, "SWITCHYARD_DATABASE_URL": db,
                              "SWITCHYARD_CONFIG": str(_config(tmp_path, inbox)),
                              "SWITCHYARD_STATE_DIR": str(tmp_path / "state")})


def _jobs_by_batch(db: str) -> dict[str, list[str]]:
    with get_engine(db).connect() as conn:
        rows = conn.execute(select(Batch.name, Job.custom_id).join(Job, Job.batch_id == Batch.id)
                            .order_by(Batch.name, Job.seq)).all()
    out: dict[str, list[str]] = {}
    for name, custom_id in rows:
        out.setdefault(name, []).append(custom_id)
    return out


def _queued(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(queue_depths(client, MODEL_QUEUES).values())
    finally:
        client.close()


def _submissions(db: str) -> list[tuple[str, int, str | None]]:
    with get_engine(db).connect() as conn:
        rows = conn.execute(select(NightlySubmission.path, NightlySubmission.jobs, NightlySubmission.error)
                            .order_by(NightlySubmission.id)).all()
    return [(Path(p).name, n, e) for p, n, e in rows]


# --- scan_and_submit -----------------------------------------------------------------------------------


def test_dropped_file_is_submitted_once_and_new_contents_count_as_new(
        settings: Settings, inbox: Path, db: str, clean_redis: str) -> None:
    _drop(inbox / "orders.jsonl", _lines("n1", "n2", "n3"))
    (inbox / "notes.txt").write_text("not matched by the glob")

    [first] = scan_and_submit(settings)
    assert (first.status, Path(first.path).name, first.jobs) == ("submitted", "orders.jsonl", 3)
    assert first.batch and first.batch.startswith("nightly-orders-")
    assert _jobs_by_batch(db) == {first.batch: ["n1", "n2", "n3"]}
    assert _queued(clean_redis) == 3

    assert scan_and_submit(settings) == []
    assert _queued(clean_redis) == 3
    assert len(_jobs_by_batch(db)[first.batch]) == 3

    # Same name, new contents (a new size and mtime): a new file, submitted in a batch of its own.
    _drop(inbox / "orders.jsonl", _lines("n1", "n2"), age_s=30)
    [second] = scan_and_submit(settings)
    assert (second.status, second.jobs) == ("submitted", 2)
    assert second.batch != first.batch
    assert _jobs_by_batch(db) == {first.batch: ["n1", "n2", "n3"], second.batch: ["n1", "n2"]}
    assert _queued(clean_redis) == 5
    assert scan_and_submit(settings) == []


def test_invalid_file_is_recorded_with_its_error_and_nothing_enqueued(
        settings: Settings, inbox: Path, db: str, clean_redis: str) -> None:
    _drop(inbox / "bad.jsonl", _lines("ok-1") + '{"custom_id": "no-prompt", "max_tokens": 8}\nnot json\n')

    [outcome] = scan_and_submit(settings)
    assert outcome.status == "invalid"
    assert outcome.error and "line 2" in outcome.error and "line 3" in outcome.error
    assert _submissions(db) == [("bad.jsonl", 0, outcome.error)]
    assert _jobs_by_batch(db) == {}
    assert _queued(clean_redis) == 0
    # Recorded, so not retried at every tick.
    assert scan_and_submit(settings) == []
    assert _queued(clean_redis) == 0


def test_file_still_being_written_waits_until_it_settles(
        db: str, clean_redis: str, tmp_path: Path, inbox: Path) -> None:
    settings = Settings.from_env({"SWITCHYARD_BROKER_URL": clean_redis, "SWITCHYARD_DATABASE_URL": db,
                                  "SWITCHYARD_CONFIG": str(_config(tmp_path, inbox, watch=str(inbox / "*")))})
    old = time.time() - 60
    part = inbox / "incoming.jsonl.part"  # a writer's temporary name: never submitted, however old
    part.write_text(_lines("p1"))
    os.utime(part, (old, old))
    growing = inbox / "growing.jsonl"
    growing.write_text(_lines("g1"))  # just written: may still grow

    [outcome] = scan_and_submit(settings)
    assert (outcome.status, Path(outcome.path).name) == ("waiting", "growing.jsonl")
    assert _jobs_by_batch(db) == {} and _queued(clean_redis) == 0 and _submissions(db) == []

    with growing.open("a") as f:
        f.write(_lines("g2"))
    os.utime(growing, (old, old))  # now unchanged for longer than settle_s
    [outcome] = scan_and_submit(settings)
    assert (outcome.status, outcome.jobs) == ("submitted", 2)
    assert list(_jobs_by_batch(db).values()) == [["g1", "g2"]]
    assert scan_and_submit(settings) == []


def test_broker_outage_is_retried_at_the_next_scan(
        settings: Settings, inbox: Path, db: str, clean_redis: str) -> None:
    _drop(inbox / "retry.jsonl", _lines("r1", "r2", "r3"))
    down = replace(settings, broker_url="redis://127.0.0.1:1/0")  # nothing listens on port 1

    [failed] = scan_and_submit(down)
    assert failed.status == "failed"
    assert _submissions(db) == []  # not recorded as done
    assert _queued(clean_redis) == 0

    [retried] = scan_and_submit(settings)
    assert (retried.status, retried.jobs, retried.batch) == ("submitted", 3, failed.batch)
    assert list(_jobs_by_batch(db).values()) == [["r1", "r2", "r3"]]
    assert _queued(clean_redis) == 3
    assert scan_and_submit(settings) == []


def test_concurrent_scans_submit_each_file_once(
        settings: Settings, inbox: Path, db: str, clean_redis: str) -> None:
    for n in range(4):
        _drop(inbox / f"f{n}.jsonl", _lines(*(f"f{n}-{i}" for i in range(20))))
    start = threading.Barrier(4)
    results: list[list[NightlyOutcome]] = []

    def scan() -> None:
        start.wait()
        results.append(scan_and_submit(settings))

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    submitted = sorted(Path(o.path).name for r in results for o in r if o.status == "submitted")
    assert submitted == ["f0.jsonl", "f1.jsonl", "f2.jsonl", "f3.jsonl"]
    assert [o for r in results for o in r if o.status != "submitted"] == []
    assert sorted(len(ids) for ids in _jobs_by_batch(db).values()) == [20, 20, 20, 20]
    assert _queued(clean_redis) == 80


def test_once_command(settings: Settings, inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SWITCHYARD_BROKER_URL", str(settings.broker_url))
    monkeypatch.setenv("SWITCHYARD_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("SWITCHYARD_CONFIG", str(settings.config_path))
    _drop(inbox / "daily.jsonl", _lines("d1", "d2"))
    assert main(["nightly", "--once"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"submitted .*daily\.jsonl: 2 job\(s\) in batch nightly-daily-", out)
    assert main(["nightly", "--once"]) == 0
    assert "nothing new" in capsys.readouterr().out

    unset = tmp_path / "unset.toml"
    unset.write_text("[nightly]\nenabled = true\n")
    monkeypatch.setenv("SWITCHYARD_CONFIG", str(unset))
    assert main(["nightly", "--once"]) == 2
    assert "nightly.watch is not set" in capsys.readouterr().err


# --- the schedule --------------------------------------------------------------------------------------


def test_schedule_from_the_nightly_settings() -> None:
    nightly = beat_schedule(NightlySpec(enabled=True, watch="/in/*.jsonl", at="02:30"))
    assert list(nightly) == ["nightly-at"]
    assert nightly["nightly-at"]["schedule"] == crontab(hour=2, minute=30)
    polled = beat_schedule(NightlySpec(enabled=True, watch="/in/*.jsonl", at="23:05", poll_s=15))
    assert polled["nightly-at"]["schedule"] == crontab(hour=23, minute=5)
    assert polled["nightly-poll"]["schedule"] == timedelta(seconds=15)
    with pytest.raises(ConfigError, match="nightly.at"):
        beat_schedule(NightlySpec(at="25:00"))


def test_nightly_tick_looks_again_at_a_file_still_being_written(
        settings: Settings, inbox: Path, db: str, clean_redis: str) -> None:
    app = build_app(settings)  # poll_s = 0: only the daily tick
    growing = _drop(inbox / "late.jsonl", _lines("l1"), age_s=0)

    assert app.tasks[NIGHTLY_TASK]() == 0
    client = redis.Redis.from_url(clean_redis)
    try:
        assert queue_depths(client, [NIGHTLY_QUEUE]) == {NIGHTLY_QUEUE: 1}  # a follow-up, not tomorrow night
        old = time.time() - 60
        os.utime(growing, (old, old))
        assert app.tasks[NIGHTLY_TASK]() == 1
        assert queue_depths(client, [NIGHTLY_QUEUE]) == {NIGHTLY_QUEUE: 1}  # nothing waits: no new follow-up
    finally:
        client.close()
    assert list(_jobs_by_batch(db).values()) == [["l1"]]


def _wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path,
              timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"nightly exited {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout}s:\n{log.read_text()[-3000:]}")


def _ticks(log: Path) -> int:
    return len(re.findall(r"Task switchyard\.nightly_scan\[[^]]+\] succeeded", log.read_text(errors="replace")))


def test_beat_submits_a_dropped_file_once(db: str, clean_redis: str, tmp_path: Path, inbox: Path) -> None:
    env = worker_env(clean_redis, db, _config(tmp_path, inbox, poll_s=1),
                     SWITCHYARD_STATE_DIR=str(tmp_path / "state"))
    log = tmp_path / "nightly.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "switchyard.cli", "--log-level", "INFO", "nightly"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for("startup line", lambda: "nightly: submitting files matching" in log.read_text(), proc, log)
        _drop(inbox / "tonight.jsonl", _lines("n1", "n2", "n3"), age_s=0)  # just dropped: settles first

        _wait_for("jobs in Postgres", lambda: sum(map(len, _jobs_by_batch(db).values())) == 3, proc, log)
        ticks = _ticks(log)
        _wait_for("two more ticks", lambda: _ticks(log) >= ticks + 2, proc, log)

        [(name, jobs, error)] = _submissions(db)
        assert (name, jobs, error) == ("tonight.jsonl", 3, None)
        assert list(_jobs_by_batch(db).values()) == [["n1", "n2", "n3"]]
        assert _queued(clean_redis) == 3
    finally:
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        reap(proc, 20)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert time.monotonic() - stopping < 10
    assert "schedule state in" in log.read_text() and str(inbox / "*.jsonl") in log.read_text()
