"""`switchyard submit` on big files: throughput and peak memory, as a user runs it (a real process).

    .venv/bin/python bench/submit_file.py [--lines 100000] [--kb 1.0]

Writes a JSONL file of short-form jobs, runs `switchyard submit FILE -q` against scratch services
(SWITCHYARD_BROKER_URL / SWITCHYARD_DATABASE_URL when set, else embedded), samples the resident memory of the
command's whole process tree every 0.1 s, and prints jobs/s and peak RSS (the submit process alone, and with its
classifier pool processes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scratch  # noqa: E402

WORDS = "invoice shipment forecast revenue policy contract delivery warehouse budget review region".split()


def write_file(path: Path, lines: int, kb: float, seed: int = 3) -> None:
    rng = random.Random(seed)
    target = int(kb * 1024)
    with path.open("w") as fh:
        for i in range(lines):
            words, size = [], 0
            while size < target:
                w = rng.choice(WORDS)
                words.append(w)
                size += len(w) + 1
            fh.write(
                json.dumps({"custom_id": f"doc-{i}", "prompt": "Summarise: " + " ".join(words), "max_tokens": 200})
                + "\n"
            )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--kb", type=float, default=1.0, help="prompt size per job")
    ap.add_argument(
        "--py-spy", metavar="OUT", help="record the submit process with py-spy (collapsed stacks; GIL holders only)"
    )
    args = ap.parse_args()
    with _scratch.scratch_services("submit", 12) as (broker, database, _):
        return run(args, broker, database)


def run(args: argparse.Namespace, broker: str, database: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="sy-submit-file-"))
    src = tmp / "jobs.jsonl"
    write_file(src, args.lines, args.kb)
    env = dict(os.environ, SWITCHYARD_BROKER_URL=broker, SWITCHYARD_DATABASE_URL=database)
    try:
        servers = ("postgres", "redis-server")
        _, tree0 = _scratch.own_cpu()
        servers0 = _scratch.cpu_seconds(servers)
        started = time.perf_counter()
        command = [sys.executable, "-m", "switchyard.cli", "submit", str(src), "-q"]
        if args.py_spy:  # figures below then include py-spy's own process; PY_SPY overrides its options
            spy = os.environ.get("PY_SPY", "py-spy record --gil --threads").split()
            command = [*spy, "-r", "250", "-f", "raw", "-o", args.py_spy, "--", *command]
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        main_proc = psutil.Process(proc.pid)
        peak_main = peak_tree = 0
        while proc.poll() is None:
            try:
                rss = main_proc.memory_info().rss
                tree = rss + sum(c.memory_info().rss for c in main_proc.children(recursive=True))
            except psutil.Error:
                break
            peak_main, peak_tree = max(peak_main, rss), max(peak_tree, tree)
            time.sleep(0.1)
        out, err = proc.communicate()
        elapsed = time.perf_counter() - started
        tree_cpu = _scratch.own_cpu()[1] - tree0  # the command and its classifier processes, all waited for
        servers_cpu = _scratch.cpu_seconds(servers) - servers0
        if proc.returncode != 0:
            print(err.decode())
            return 1
        print(f"file: {args.lines:,} lines, {src.stat().st_size / 1e6:.1f} MB")
        print(
            f"switchyard submit: {elapsed:.1f}s wall = {args.lines / elapsed:,.0f} jobs/s "
            "(whole command: start-up, validation pass, classification, Postgres, publish)"
        )
        print(f"peak RSS: {peak_main / 1e6:.0f} MB submit process; {peak_tree / 1e6:.0f} MB with its classifier pool")
        per_job = (tree_cpu / args.lines * 1e6, servers_cpu / args.lines * 1e6)
        print(
            "CPU per job: {:.0f} us the command and its classifier processes, {:.0f} us PostgreSQL + Redis servers "
            "(every such process on the machine); {:.0f} us in all".format(*per_job, sum(per_job))
        )
        print(err.decode().strip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
