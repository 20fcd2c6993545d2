"""The command line of the contract, run as a user runs it (a real process, real services)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from producer.queues import queue_depths
from producer.submit import Submitter
from schemas.tables import Batch, Job
from switchyard.db import get_engine
from tests.workerproc import worker_env

MODELS = ["llama-3-70b", "mistral-7b", "gpt-4-turbo", "claude-3-opus"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def write_jobs(path: Path, n: int, prefix: str = "j") -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"custom_id": f"{prefix}{i}", "prompt": f"What is {i} plus {i}?",
                                 "max_tokens": 16}) + "\n")
    return path


@pytest.fixture
def env(db: str, clean_redis: str) -> dict[str, str]:
    return worker_env(clean_redis, db)


def _depth(url: str) -> int:
    return sum(queue_depths(redis.Redis.from_url(url), MODELS).values())


def test_classify_prints_the_contract_fields(tmp_path: Path, env: dict[str, str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"custom_id": "a", "prompt": "Email maria.gonzalez@example.com her invoice"}) + "\n"
                   + json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}})
                   + "\n")
    out = run(["classify", str(src)], env)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    contract = ["custom_id", "model", "queue", "reason", "contains_pii", "pii_types", "complexity",
                "expected_output_tokens"]
    assert all(list(row)[:len(contract)] == contract for row in rows)
    assert rows[0]["model"] == "llama-3-70b" and rows[0]["contains_pii"] and "EMAIL" in rows[0]["pii_types"]
    assert rows[1]["custom_id"] == "b"


def test_bad_file_is_refused_whole_with_every_error_and_nothing_enqueued(tmp_path: Path, env: dict[str, str],
                                                                         db: str, clean_redis: str) -> None:
    src = write_jobs(tmp_path / "bad.jsonl", 5)
    with src.open("a") as fh:
        fh.write("{oops\n")
        fh.write(json.dumps({"custom_id": "j1", "prompt": "dup"}) + "\n")
        fh.write(json.dumps({"custom_id": "x", "prompt": "x", "max_tokens": -1}) + "\n")
    out = run(["submit", str(src), "-q"], env)
    assert out.returncode == 2
    assert "line 6: not valid JSON: Expecting property name enclosed in double quotes at column 2" in out.stderr
    assert "line 7: custom_id: duplicate 'j1'" in out.stderr
    assert "line 8: max_tokens:" in out.stderr
    assert "nothing was enqueued" in out.stderr
    assert _depth(clean_redis) == 0
    with get_engine(db).connect() as conn:
        assert conn.execute(select(func.count()).select_from(Job)).scalar() == 0


def test_submit_twice_enqueues_nothing_new_and_status_results_work(tmp_path: Path, env: dict[str, str],
                                                                    clean_redis: str) -> None:
    src = write_jobs(tmp_path / "good.jsonl", 30)
    first = run(["submit", str(src), "-q"], env)
    assert first.returncode == 0, first.stderr
    batch = first.stdout.strip()
    assert "submitted 30 new job(s)" in first.stderr
    again = run(["submit", str(src), "-q"], env)
    assert again.stdout.strip() == batch
    assert "submitted 0 new job(s), 30 already in the batch" in again.stderr
    assert _depth(clean_redis) == 30
    status = run(["status", batch, "--json"], env)
    assert json.loads(status.stdout)["states"] == {"queued": 30}
    out_file = tmp_path / "results.jsonl"
    results = run(["results", batch, "-o", str(out_file)], env)
    assert results.returncode == 0
    lines = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"j{i}" for i in range(30)]
    assert all(x["response"] is None and x["error"]["code"] == "not_finished" for x in lines)
    assert run(["status", "no-such-batch"], env).returncode == 2


def test_resubmit_after_an_interrupted_submit_enqueues_only_what_is_missing(
        tmp_path: Path, env: dict[str, str], db: str, clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_jobs(tmp_path / "big.jsonl", 1000)
    calls = {"n": 0}
    real_publish = Submitter._publish

    def publish_then_die(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed between recording chunk 2 and publishing it
        return real_publish(self, *args, **kwargs)

    monkeypatch.setattr(Submitter, "_publish", publish_then_die)
    from producer.submit_file import submit_file
    from switchyard.settings import Settings

    settings = Settings.from_env({}).with_urls(clean_redis, db)
    with pytest.raises(KeyboardInterrupt):
        submit_file(settings, str(src), batch="resume", progress=False, chunk=400)
    monkeypatch.setattr(Submitter, "_publish", real_publish)
    # Chunks of 400, 400 and 200, recorded by two writers: the second chunk to reach publishing (chunk 2 or 3)
    # was recorded but not published; the other may or may not have finished.
    with get_engine(db).connect() as conn:
        held = conn.execute(select(Batch.unpublished).where(Batch.name == "resume")).scalar_one()
        recorded = conn.execute(select(func.count()).select_from(Job)).scalar()
    assert len(held) in (200, 400)  # what the next run will publish
    assert recorded in (800, 1000) and _depth(clean_redis) == recorded - len(held)
    out = run(["submit", str(src), "--batch", "resume", "-q"], env)
    assert out.returncode == 0, out.stderr
    assert (f"submitted {1000 - recorded} new job(s), {recorded} already in the batch, {len(held)} republished"
            in out.stderr)
    assert _depth(clean_redis) == 1000
    with get_engine(db).connect() as conn:
        assert conn.execute(select(func.count()).select_from(Job)).scalar() == 1000
        assert conn.execute(select(Batch.unpublished).where(Batch.name == "resume")).scalar_one() == []


def test_a_real_commercial_worker_without_a_key_is_refused(env: dict[str, str]) -> None:
    out = run(["worker", "gpt-4-turbo"], {k: v for k, v in env.items() if not k.startswith("OPENAI_")})
    assert out.returncode == 2
    assert "no API key" in out.stderr and "OPENAI_API_KEY" in out.stderr


def test_submit_prints_only_the_batch_id_on_stdout(tmp_path: Path, env: dict[str, str]) -> None:
    """`B=$(switchyard submit F)`: the progress bars go to stderr (and only to a terminal), never into $B."""
    src = write_jobs(tmp_path / "good.jsonl", 12)
    out = run(["submit", str(src)], env)  # no -q: stdout and stderr are pipes, as in $(...)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [out.stdout.strip()] and "validating" not in out.stdout
    assert run(["status", out.stdout.strip(), "--json"], env).returncode == 0


def test_resubmitting_a_file_with_a_changed_prompt_warns(tmp_path: Path, env: dict[str, str]) -> None:
    src = write_jobs(tmp_path / "edited.jsonl", 4)
    assert run(["submit", str(src), "-q"], env).returncode == 0
    lines = src.read_text().splitlines()
    lines[2] = json.dumps({"custom_id": "j2", "prompt": "Something else entirely", "max_tokens": 16})
    src.write_text("\n".join(lines) + "\n")
    again = run(["submit", str(src), "-q"], env)
    assert again.returncode == 0, again.stderr
    assert "submitted 0 new job(s), 4 already in the batch" in again.stderr
    assert "warning: 1 job(s) differ from what batch" in again.stderr and "not resubmitted (j2)" in again.stderr


def test_results_into_a_closed_pipe_exits_quietly(tmp_path: Path, env: dict[str, str]) -> None:
    """`switchyard results B | head -1` must not end in a BrokenPipeError traceback."""
    import os

    batch = run(["submit", str(write_jobs(tmp_path / "pipe.jsonl", 20)), "-q"], env).stdout.strip()
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written
    try:
        out = subprocess.run([sys.executable, "-m", "switchyard.cli", "results", batch], env=env, stdout=write,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
    assert out.returncode == 1  # the contract's "other failure"
