"""``switchyard nightly``: a Celery beat schedule that submits the files matching ``nightly.watch``, once each.

One process holds both the schedule and its execution: a Celery worker with an embedded beat, consuming only
its own queue (``switchyard-nightly``) with the solo pool, so that a scan is never run twice at once by one
process and the GPU/API workers never see the task. ``nightly.at`` becomes a daily crontab (local time of this
process); ``nightly.poll_s > 0`` adds an interval schedule. Beat's state file lives under the state dir, so a
run missed while the process was down is made up once at restart.

Once each: a file version is (absolute path, size, mtime_ns), the unique key of ``nightly_submissions``. Its row
is inserted (ON CONFLICT DO NOTHING) in a transaction that stays open while the file is submitted and commits
with the outcome, under a per-file advisory lock so that a second process skips rather than waits. A crash
mid-submit rolls the row back; the next tick submits again under the same batch name, which the submitter
makes idempotent per custom_id, so no job is enqueued twice. An invalid file is committed with its error
(submit_file validates the whole file before enqueueing anything) and is not tried again.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import logging
import os
import re
import socket
import stat
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from schemas.tables import NightlySubmission
from switchyard.catalog import NightlySpec
from switchyard.errors import ConfigError, InputError
from switchyard.settings import Settings

log = logging.getLogger(__name__)

NIGHTLY_TASK = "switchyard.nightly_scan"
NIGHTLY_QUEUE = "switchyard-nightly"
#: Names writers use while a file is incomplete; the finished file is renamed without them.
WRITING_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload")
#: Problems kept in a recorded error: enough to fix the pattern, bounded for a file of a million bad lines.
MAX_RECORDED_PROBLEMS = 20

Status = Literal["submitted", "invalid", "waiting", "failed"]


@dataclass(frozen=True)
class NightlyOutcome:
    """What one scan did with one file (files recorded earlier are not reported)."""

    path: str
    status: Status  # submitted | invalid (recorded, never retried) | waiting (still written) | failed (retried)
    batch: str | None = None
    jobs: int = 0
    error: str | None = None

    def __str__(self) -> str:
        if self.status == "submitted":
            return f"submitted {self.path}: {self.jobs} job(s) in batch {self.batch}"
        if self.status == "invalid":
            return f"invalid {self.path}: recorded, nothing enqueued; fix it and drop it again\n  {self.error}"
        if self.status == "waiting":
            return f"waiting {self.path}: {self.error}"
        return f"failed {self.path}: {self.error} (will retry at the next scan)"


def parse_at(at: str) -> tuple[int, int]:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", at.strip())
    if not m:
        raise ConfigError(f"nightly.at: {at!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return int(m.group(1)), int(m.group(2))


def batch_name(path: str, size: int, mtime_ns: int) -> str:
    """``nightly-<stem>-<file date>-<hash of the file version>``.

    Not ``default_batch_name``: it hashes the path only, so a file replaced under the same name would land in
    the earlier batch and its jobs would be skipped as already submitted. The hash of the version keeps each
    version apart, and being deterministic it lets a retry after a crash resume the same batch.
    """
    digest = hashlib.sha256(f"{path}\0{size}\0{mtime_ns}".encode()).hexdigest()[:8]
    day = datetime.fromtimestamp(mtime_ns / 1e9).strftime("%Y%m%d")
    return f"nightly-{Path(path).stem[:200]}-{day}-{digest}"


def _lock_key(path: str, size: int, mtime_ns: int) -> int:
    digest = hashlib.sha256(f"nightly\0{path}\0{size}\0{mtime_ns}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)  # pg advisory locks take a signed bigint


def _candidates(pattern: str) -> list[tuple[str, os.stat_result]]:
    found = []
    for name in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)):
        if name.endswith(WRITING_SUFFIXES):
            continue
        try:
            st = os.stat(name)
        except FileNotFoundError:  # removed since the glob
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((os.path.abspath(name), st))
    return found


def _recorded(conn: Connection, paths: list[str]) -> set[tuple[str, int, int]]:
    rows = conn.execute(select(NightlySubmission.path, NightlySubmission.size, NightlySubmission.mtime_ns)
                        .where(NightlySubmission.path.in_(paths)))
    return {(p, s, m) for p, s, m in rows}


def _problems_text(exc: InputError) -> str:
    lines = [str(p) for p in exc.problems[:MAX_RECORDED_PROBLEMS]]
    if len(exc.problems) > MAX_RECORDED_PROBLEMS:
        lines.append(f"(and {len(exc.problems) - MAX_RECORDED_PROBLEMS} more)")
    return "\n".join(lines)


def _submit_once(settings: Settings, conn: Connection, path: str, size: int, mtime_ns: int,
                 batch: str) -> NightlyOutcome | None:
    """Claim and submit one file version; None when another scan has it or already had it."""
    from producer.submit_file import submit_file

    with conn.begin():
        if not conn.execute(select(func.pg_try_advisory_xact_lock(_lock_key(path, size, mtime_ns)))).scalar():
            return None  # another process is submitting this very version right now
        row_id = conn.execute(
            pg_insert(NightlySubmission).values(path=path, size=size, mtime_ns=mtime_ns, batch_name=batch)
            .on_conflict_do_nothing(constraint="uq_nightly_file").returning(NightlySubmission.id)).scalar()
        if row_id is None:
            return None
        row = update(NightlySubmission).where(NightlySubmission.id == row_id)
        try:
            report = submit_file(settings, path, batch=batch, progress=False)
        except InputError as exc:
            error = _problems_text(exc)
            conn.execute(row.values(error=error))
            return NightlyOutcome(path, "invalid", batch, 0, error)
        # skipped = jobs an interrupted earlier attempt recorded in this batch: still this file's jobs.
        jobs = report.submitted + report.skipped
        conn.execute(row.values(jobs=jobs))
        return NightlyOutcome(path, "submitted", batch, jobs)


def scan_and_submit(settings: Settings) -> list[NightlyOutcome]:
    """Submit every settled file matching ``nightly.watch`` that has not been submitted before."""
    from switchyard.db import get_engine

    spec = settings.catalog.nightly
    if not spec.watch.strip():
        raise ConfigError("nightly.watch is not set: give a glob such as \"/data/inbox/*.jsonl\" in the TOML "
                          "file that SWITCHYARD_CONFIG names")
    _, database_url = settings.require_urls()
    engine = get_engine(database_url)
    files = _candidates(spec.watch)
    outcomes: list[NightlyOutcome] = []
    with engine.connect() as conn:
        done = _recorded(conn, [p for p, _ in files]) if files else set()
        conn.rollback()
        for path, st in files:
            if (path, st.st_size, st.st_mtime_ns) in done:
                continue
            age = time.time() - st.st_mtime_ns / 1e9
            if age < spec.settle_s:
                outcomes.append(NightlyOutcome(path, "waiting", error=f"modified {max(age, 0):.1f}s ago, "
                                               f"waiting until it is unchanged for {spec.settle_s:g}s"))
                continue
            batch = batch_name(path, st.st_size, st.st_mtime_ns)
            try:
                outcome = _submit_once(settings, conn, path, st.st_size, st.st_mtime_ns, batch)
            except FileNotFoundError:
                continue  # moved away between the glob and the submit: nothing to do
            except Exception as exc:  # broker or database trouble: rolled back, so retried at the next scan
                log.exception("nightly: %s could not be submitted; it will be retried", path)
                outcome = NightlyOutcome(path, "failed", batch, error=f"{type(exc).__name__}: {exc}")
            if outcome is not None:
                outcomes.append(outcome)
    _log_outcomes(outcomes)
    return outcomes


def _log_outcomes(outcomes: list[NightlyOutcome]) -> None:
    for o in outcomes:
        if o.status == "submitted":
            log.info("nightly: submitted %s: %s job(s) in batch %s", o.path, o.jobs, o.batch)
        elif o.status == "invalid":
            log.warning("nightly: %s is invalid, recorded and not enqueued: %s", o.path, o.error)
        elif o.status == "waiting":
            log.debug("nightly: %s: %s", o.path, o.error)


# --- the beat schedule ---------------------------------------------------------------------------------


def beat_schedule(spec: NightlySpec) -> dict[str, dict[str, Any]]:
    from celery.schedules import crontab

    hour, minute = parse_at(spec.at)
    entries: dict[str, dict[str, Any]] = {
        "nightly-at": {"task": NIGHTLY_TASK, "schedule": crontab(hour=hour, minute=minute),
                       "options": {"queue": NIGHTLY_QUEUE}},
    }
    if spec.poll_s > 0:
        # A tick not yet run when the next one is sent is redundant: let it expire instead of piling up.
        entries["nightly-poll"] = {"task": NIGHTLY_TASK, "schedule": timedelta(seconds=spec.poll_s),
                                   "options": {"queue": NIGHTLY_QUEUE, "expires": max(spec.poll_s, 1.0)}}
    return entries


def build_app(settings: Settings) -> Any:  # -> celery.Celery
    """The fleet's Celery app plus the nightly queue, task and schedule (for this process only)."""
    from kombu import Exchange, Queue

    from workers.app import create_app

    app = create_app(settings)
    exchange = Exchange("switchyard", type="direct")
    app.conf.task_queues = [*app.conf.task_queues, Queue(NIGHTLY_QUEUE, exchange, routing_key=NIGHTLY_QUEUE)]
    app.conf.task_routes = {**app.conf.task_routes, NIGHTLY_TASK: {"queue": NIGHTLY_QUEUE}}
    # `at` is the local time of this process (the fleet's Celery config is UTC).
    app.conf.enable_utc = False
    app.conf.timezone = None
    app.conf.beat_schedule = beat_schedule(settings.catalog.nightly)

    spec = settings.catalog.nightly

    @app.task(name=NIGHTLY_TASK, ignore_result=True, bind=True)
    def nightly_scan(task: Any) -> int:
        outcomes = scan_and_submit(settings)
        if spec.poll_s == 0 and any(o.status == "waiting" for o in outcomes):
            # Without polling, the next look would be tomorrow night: look again once the file has settled.
            # Only the daily tick starts such a chain, and it ends at the first scan where nothing waits.
            task.apply_async(countdown=max(spec.settle_s, 1.0))
        return sum(o.status == "submitted" for o in outcomes)

    return app


def _run_beat(settings: Settings) -> int:
    spec = settings.catalog.nightly
    app = build_app(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    schedule_file = settings.state_dir / "nightly-beat-schedule"
    every = f" and every {spec.poll_s:g}s" if spec.poll_s > 0 else ""
    print(f"nightly: submitting files matching {spec.watch} daily at {spec.at} local time{every}; "
          f"schedule state in {schedule_file}", flush=True)
    worker = app.Worker(
        hostname=f"nightly-{os.getpid()}@{socket.gethostname()}", pool_cls="solo", concurrency=1,
        queues=[NIGHTLY_QUEUE], beat=True, schedule_filename=str(schedule_file),
        # At least INFO, like `switchyard worker`: a daemon's submissions and ticks belong in its log.
        loglevel=logging.getLevelName(min(logging.getLogger().getEffectiveLevel(), logging.INFO)),
        without_mingle=True, without_gossip=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


def cmd_nightly(args: argparse.Namespace) -> int:
    from switchyard.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, connected_settings

    spec = Settings.from_env().catalog.nightly
    if not spec.watch.strip():
        print("error: nightly.watch is not set: add [nightly] watch = \"/data/inbox/*.jsonl\" to the TOML file "
              "that SWITCHYARD_CONFIG names", file=sys.stderr)
        return EXIT_USAGE
    parse_at(spec.at)  # a bad time fails now, not at the first tick
    if not args.once and not spec.enabled:
        print("error: nightly.enabled is false: set it to true to run the schedule "
              "(or use --once to scan now)", file=sys.stderr)
        return EXIT_USAGE
    settings = connected_settings()
    if not args.once:
        return _run_beat(settings)
    outcomes = scan_and_submit(settings)
    for o in outcomes:
        print(o, file=sys.stdout if o.status == "submitted" else sys.stderr)
    if not outcomes:
        print(f"nothing new matching {spec.watch}")
    return EXIT_FAIL if any(o.status == "failed" for o in outcomes) else EXIT_OK
