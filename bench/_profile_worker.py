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
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def count_steps(out: Path, every_s: float = 0.2) -> None:
    """Count the scheduler's steps and their modelled seconds; rewritten to ``out`` every ``every_s`` seconds
    (not only at exit: a worker killed after its timeout runs no atexit hook)."""
    import json
    import threading
    import time

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--outputs", help="MIN:MAX output tokens of the simulated preset")
    ap.add_argument("--cpu-file")
    ap.add_argument("--engine-stats")
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
