"""Bench-only launcher: runs ``switchyard worker ...`` (the same CLI entry point, in this process) with hooks
that the product has no flag for and bench/gpu_batching.py needs:

    .venv/bin/python bench/_profile_worker.py [--outputs MIN:MAX] [--cpu-file F] [--engine-stats F] \
        -- worker llama-3-70b --engine simulated --concurrency 256

--outputs       replaces the simulated preset's hashed output range (the executor does not pass
                ``request.extra`` through, so ``simulated_output_tokens`` cannot reach the engine from a job).
--cpu-file      writes the process's CPU seconds ("user system", all threads) when Celery's ``worker_ready``
                fires, so that CPU per job excludes start-up (imports, engine start).
--engine-stats  keeps {"steps", "modelled_s"} of the simulated engine's scheduler in F (JSON, every 0.2 s), from
                which the bench derives the mean batch and how closely the engine loop kept its pace.
--thread-cpu    keeps {"ready": ..., "now": ...} in F (JSON, every second: reading 260 threads' /proc entries
                costs CPU too): CPU seconds per kind of thread (Celery's event loop, task threads, the recorder's
                writer, the engine loop, these bench threads) at ``worker_ready`` and now, from /proc/self/task.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def count_steps(out: Path, every_s: float = 0.2) -> None:
    """Count the scheduler's steps and their modelled seconds; rewritten to ``out`` every ``every_s`` seconds
    (not only at exit: a worker killed after its timeout runs no atexit hook)."""
    from workers.engines import simulated

    stats = {"steps": 0, "modelled_s": 0.0}
    commit = simulated._Scheduler.commit

    def counting(self: Any, admitted: list[Any], v_start: float, v_end: float) -> list[Any]:
        stats["steps"] += 1
        stats["modelled_s"] += v_end - v_start
        return commit(self, admitted, v_start, v_end)

    def write() -> None:
        while True:
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(stats))
            tmp.replace(out)  # atomic: the bench never reads half a file
            time.sleep(every_s)

    simulated._Scheduler.commit = counting  # type: ignore[method-assign]
    threading.Thread(target=write, name="bench-engine-stats", daemon=True).start()


def _thread_kind(name: str) -> str:
    if name == "MainThread":
        return "Celery event loop (fetch, dispatch, acks)"
    if name.startswith("ThreadPoolExecutor"):
        return "task threads (claim, generate, record: waiting mostly)"
    return f"{name} (bench only)" if name.startswith("bench-") else name


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads, summed per kind of thread."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: Counter[str] = Counter()
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended
            continue
        out[_thread_kind(names.get(int(stat.parent.name), "threads outside Python"))] += (
            int(fields[11]) + int(fields[12])
        ) / tick
    return dict(out)


def track_thread_cpu(out: Path, every_s: float = 1.0) -> None:
    from celery.signals import worker_ready

    state: dict[str, dict[str, float]] = {"ready": {}, "now": {}}
    worker_ready.connect(lambda **_: state.update(ready=thread_cpu()), weak=False)

    def write() -> None:
        while True:
            state["now"] = thread_cpu()
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(out)
            time.sleep(every_s)

    threading.Thread(target=write, name="bench-thread-cpu", daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--outputs", help="MIN:MAX output tokens of the simulated preset")
    ap.add_argument("--cpu-file")
    ap.add_argument("--engine-stats")
    ap.add_argument("--thread-cpu")
    ap.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the switchyard command line")
    args = ap.parse_args()
    cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli

    if args.outputs:
        from workers.engines import simulated

        lo, hi = (int(x) for x in args.outputs.split(":"))
        model = cli[1]  # worker MODEL ...
        simulated.PRESETS[model] = dataclasses.replace(
            simulated.PRESETS[model], output_tokens_min=lo, output_tokens_max=hi
        )
    if args.engine_stats:
        count_steps(Path(args.engine_stats))
    if args.thread_cpu:
        track_thread_cpu(Path(args.thread_cpu))
    if args.cpu_file:
        from celery.signals import worker_ready

        cpu_file = Path(args.cpu_file)

        def snapshot(**_: Any) -> None:
            t = os.times()  # the same clock (utime + stime of every thread) that /proc/PID/stat reports
            cpu_file.write_text(f"{t.user} {t.system}\n")

        worker_ready.connect(snapshot, weak=False)

    from switchyard.cli import main as cli_main

    return cli_main(cli)


if __name__ == "__main__":
    sys.exit(main())
