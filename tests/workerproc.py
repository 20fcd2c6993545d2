"""Real worker processes for integration and failure tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY = "worker consuming"


@dataclass
class WorkerHandle:
    proc: subprocess.Popen[bytes]
    log: Path
    model: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY in self.output():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.model} exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"worker {self.model} not ready after {timeout}s:\n{self.output()[-3000:]}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            reap(self.proc, timeout)
        return self.proc.returncode


def reap(proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Wait for a process already asked to stop (SIGTERM); kill it if it will not."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def worker_env(redis_url: str, database_url: str, config: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHYARD_", "OPENAI_", "ANTHROPIC_"))}
    env.update(SWITCHYARD_BROKER_URL=redis_url, SWITCHYARD_DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    if config is not None:
        env["SWITCHYARD_CONFIG"] = str(config)
    env.update(extra)
    return env


def start_worker(model: str, env: dict[str, str], log_dir: Path, *, engine: str | None = "simulated",
                 concurrency: int = 16, name: str | None = None, ready: bool = True) -> WorkerHandle:
    log = log_dir / f"{name or model}-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "switchyard.cli", "worker", model, "--concurrency", str(concurrency)]
    if engine:
        cmd += ["--engine", engine]
    if name:
        cmd += ["--hostname", f"{name}@test"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    handle = WorkerHandle(proc, log, model)
    if ready:
        handle.wait_ready()
    return handle
