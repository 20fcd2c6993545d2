"""What a user of the command line sees: messages in the contract's terms, pipes that close early, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from producer.reader import collect_jobs, parse_line
from switchyard import cli
from switchyard.errors import InputError


def test_a_line_without_prompt_says_so_in_the_contracts_terms() -> None:
    _, problems = parse_line(json.dumps({"custom_id": "b-2"}), 3)
    text = [str(p) for p in problems]
    assert len(text) == 1, text
    assert text[0].startswith("line 3: prompt: missing"), text
    assert "body.messages" in text[0] and "Field required" not in text[0]
    with pytest.raises(InputError) as info:
        collect_jobs([{"custom_id": "a", "prompt": "x"}, {"custom_id": "b-2"}])
    assert [str(p) for p in info.value.problems] == [text[0].replace("line 3", "line 2")]


def test_bad_json_names_one_line_and_a_column() -> None:
    _, problems = parse_line(b'{"custom_id": "a", "prompt": "x"\n', 2)
    assert [str(p) for p in problems] == ["line 2: not valid JSON: Expecting ',' delimiter at end of line"]
    _, problems = parse_line(b'{"custom_id": "a" "prompt": "x"}\n', 5)
    assert [str(p) for p in problems] == ["line 5: not valid JSON: Expecting ',' delimiter at column 19"]


def test_classify_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`switchyard classify F | head -1`: the reader goes away; no traceback, the status of a SIGPIPE death."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"custom_id": f"j{i}", "prompt": f"Say {i}"}) + "\n" for i in range(50)))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "switchyard.cli", "classify", str(src)], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert proc.returncode == cli.EXIT_FAIL


class _Report:
    batch, submitted, skipped, republished, changed = "b1", 2, 0, 0, 0


def _wait_with(monkeypatch: pytest.MonkeyPatch, states: dict[str, int]) -> int:
    import producer.client
    import producer.submit_file

    class FakeClient:
        def __init__(self, **_: Any) -> None:
            pass

        def wait(self, batch: str, timeout: float | None = None) -> dict[str, Any]:
            return {"states": states, "done": sum(states.values()), "total": sum(states.values())}

    monkeypatch.setattr(cli, "connected_settings", lambda *a, **k: None)
    monkeypatch.setattr(producer.submit_file, "submit_file", lambda *a, **k: _Report())
    monkeypatch.setattr(producer.client, "Client", FakeClient)
    args = argparse.Namespace(input="x.jsonl", batch="b1", quiet=True, wait=True, timeout=None)
    return cli.cmd_submit(args)


def test_submit_wait_warns_when_a_job_failed(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The contract's exit statuses hold (the batch ran: 0), but failed jobs are never passed over silently."""
    assert _wait_with(monkeypatch, {"succeeded": 2}) == cli.EXIT_OK
    assert "failed" not in capsys.readouterr().err
    assert _wait_with(monkeypatch, {"succeeded": 1, "failed": 1}) == cli.EXIT_OK
    assert "warning: 1 job(s) failed" in capsys.readouterr().err
    assert _wait_with(monkeypatch, {"succeeded": 1, "dead": 1}) == cli.EXIT_OK
    assert "warning: 1 job(s) failed" in capsys.readouterr().err


def test_classify_refuses_a_bad_file_in_its_own_terms(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"custom_id": "a", "prompt": "x"}) + "\n{oops\n")
    proc = subprocess.run([sys.executable, "-m", "switchyard.cli", "classify", str(src)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == cli.EXIT_USAGE
    assert "1 problem(s) found; nothing was classified" in proc.stderr and "line 2: not valid JSON" in proc.stderr


def test_embedded_servers_a_command_starts_are_announced_once(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Servers that outlive the command are announced when started, and not when a later command reuses them."""
    from switchyard import services
    from switchyard.settings import Settings

    running: set[str] = set()

    def start(name: str) -> Any:
        def _start(*_: Any, **__: Any) -> str:
            running.add(name)
            return "redis://127.0.0.1:1/0" if name == "redis" else "postgresql+psycopg://postgres@/x"
        return _start

    monkeypatch.setattr(services, "start_embedded_redis", start("redis"))
    monkeypatch.setattr(services, "start_embedded_postgres", start("postgres"))
    monkeypatch.setattr(services, "embedded_redis_running", lambda _: "redis" in running)
    monkeypatch.setattr(services, "embedded_postgres_running", lambda _: "postgres" in running)
    monkeypatch.delenv("SWITCHYARD_BROKER_URL", raising=False)
    monkeypatch.delenv("SWITCHYARD_DATABASE_URL", raising=False)
    settings = Settings.from_env({})
    cli.connected_settings(settings, migrate=False)
    first = capsys.readouterr().err
    assert "note: started embedded Redis and PostgreSQL" in first and "switchyard services stop" in first
    cli.connected_settings(settings, migrate=False)
    assert "started embedded" not in capsys.readouterr().err


def test_http_clients_do_not_log_every_request_at_info() -> None:
    """A worker logs at INFO: the SDKs' HTTP clients (httpx, and the httpx2 newer OpenAI SDKs bundle) would
    add a line per provider call."""
    import logging

    cli.setup_logging("INFO")
    for name in ("httpx", "httpx2", "httpcore"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
