"""Bench-only worker for ``bench/rate_limit.py``'s comparison run: a commercial-model worker as a naive deployment
runs it -- Celery's ``rate_limit`` on the task (which Celery enforces per worker process) and no Switchyard global
limiter. Everything else (executor, backend, retries honouring Retry-After, Postgres ledger) is the product's.

    .venv/bin/python bench/_celery_ratelimit_worker.py gpt-4-turbo --rate-limit 600/m [--concurrency 16]

Configuration comes from the environment, as for ``switchyard worker``. Prints the same "worker consuming" line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from celeryconfig import RUN_JOB_TASK  # noqa: E402
from switchyard.cli import connected_settings, setup_logging  # noqa: E402
from workers.worker import WorkerOptions, WorkerProcess  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--rate-limit", default="600/m", help="Celery rate_limit of the task, per worker process")
    ap.add_argument("--concurrency", type=int, default=None)
    args = ap.parse_args(argv)
    setup_logging("INFO")
    proc = WorkerProcess(
        connected_settings(), WorkerOptions(model=args.model, engine="api", concurrency=args.concurrency)
    )
    # rpm = tpm = 0 is the catalog's "unlimited": _build_executor (called in run()) then builds no
    # GlobalRateLimiter. Only this process's copy of the spec changes; the executor keeps the catalog's.
    proc.spec = proc.spec.model_copy(update={"rpm": 0, "tpm": 0})
    # What `@app.task(rate_limit="600/m")` does, applied to the product's task without editing it. The app is
    # not finalized yet, so the annotation is read when the task is bound (the lookup below binds it).
    proc.app.conf.task_annotations = {RUN_JOB_TASK: {"rate_limit": args.rate_limit}}
    bound = proc.app.tasks[RUN_JOB_TASK].rate_limit
    if bound != args.rate_limit:
        print(f"error: task rate_limit is {bound!r}, not {args.rate_limit!r}", file=sys.stderr)
        return 1
    return proc.run()


if __name__ == "__main__":
    sys.exit(main())
