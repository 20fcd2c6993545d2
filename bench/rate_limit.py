"""The global rate limiter under load: 8 real ``switchyard worker gpt-4-turbo --engine api`` processes against the
local OpenAI-protocol server enforcing the same limits, beside the same run with Celery's per-worker
``rate_limit`` instead (what a naive deployment does).

    .venv/bin/python bench/rate_limit.py [--seconds 60] [--workers 8] [--threads 16] [--only switchyard|celery]
                                         [--dump RAW.json]

Both runs: limits 600 requests/min and 150,000 tokens/min, configured in the catalog (a TOML written to a temp
dir) and enforced by ``python -m switchyard.localapi openai --rpm 600 --tpm 150000 --delay 0.2``. Each job is an
explicit gpt-4-turbo request of 800 characters (200 tokens to the server) with ``max_tokens`` 64 (the server
answers 8..64 tokens), ~236 tokens in all: 600 of them are ~94 % of the token limit, so the REQUEST limit binds
and both are near their limits. 5,000 jobs keep the queue non-empty for a whole run of either kind.

Figures come from the server's request log (``GET /_requests``: arrival time and status of every call). The log
has no token counts, so each call's tokens are recomputed with the server's own ``simulate()`` from the prompt
stored in Postgres (matched by the logged prompt hash), and checked against the ledger. The measured period
starts at the first request and lasts ``--seconds``; then the workers get SIGTERM and finish what they hold
(those late requests count in the 60 s window maxima too). The achieved rate is the mean of the provider's 60 s
windows over the period: a sliding log refills in bursts, so a plain count over a period that is not a whole
number of spans would swing by up to a whole limit.

Warm-up: a sliding-log limiter (ours, and the server's) admits up to the limit at once into an empty window, so
the first 60 s reach 100 % by a burst in the first seconds, then wait for that burst to leave the window. From
then on each slot is reused once per span (window + safety margin), so the steady state is measured as
``60 s / (arrival of request k - arrival of request k-600)``: the span the limiter actually achieved.

The Switchyard run also samples the limiter's sliding log in Redis to report the delay from each admission to
its arrival at the server: the limiter is exact only while that delay varies by less than its safety margin.

Uses SWITCHYARD_BROKER_URL / SWITCHYARD_DATABASE_URL when set (Redis db 12 is flushed and used; a scratch
database per run is created and dropped), else embedded servers in a temp dir, stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from producer.client import Client  # noqa: E402
from schemas.tables import Job, LedgerEntry  # noqa: E402
from switchyard import services  # noqa: E402
from switchyard.db import get_engine, upgrade  # noqa: E402
from switchyard.localapi.server import ParsedCall, prompt_hash, prompt_texts, simulate  # noqa: E402
from switchyard.settings import Settings  # noqa: E402
from tests.workerproc import WorkerHandle, worker_env  # noqa: E402

MODEL = "gpt-4-turbo"
WINDOW_S = 60.0
COMPLETIONS = "/v1/chat/completions"
LIMITER_LOG = f"switchyard:rl:{{{MODEL}}}:log"  # the GlobalRateLimiter's sliding log (see workers/ratelimit.lua)
T_START = time.monotonic()


def note(text: str) -> None:
    """Progress on stderr, so stdout holds only the figures."""
    print(f"[{time.monotonic() - T_START:6.1f}s] {text}", file=sys.stderr, flush=True)


from enqueue import WORDS  # noqa: E402  (the same business vocabulary as the enqueue bench)


def make_jobs(n: int, chars: int, max_tokens: int, seed: int = 11) -> list[dict[str, Any]]:
    """Distinct prompts of exactly ``chars`` characters (distinct, so the log's prompt hash names one job)."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        text = f"Summarise note {i}:"
        while len(text) < chars:
            text += " " + rng.choice(WORDS)
        jobs.append({"custom_id": f"rl-{i}", "prompt": text[:chars], "max_tokens": max_tokens, "model": MODEL})
    return jobs


@dataclass
class Run:
    mode: str
    seconds: float
    sent: list[float]  # arrival times of every model call, sorted
    ok: list[tuple[float, int]]  # (arrival, tokens) of the calls the server accepted
    limited: list[float]  # arrival times of the calls answered 429
    states: dict[str, int]
    unmatched: int  # accepted calls whose prompt hash matched no job of the run (should be 0)
    ledger_checked: int
    ledger_mismatch: int
    admissions: list[tuple[float, float]]  # (limiter admission (Redis TIME), seconds until it reached the server)


class AdmissionSampler(threading.Thread):
    """Copies the limiter's sliding log (reservation id -> admission time) out of Redis every half second.

    Entries live a whole span (60.5 s), so sampling this often sees every one, even those released after a 429.
    """

    def __init__(self, broker: str) -> None:
        super().__init__(name="admission-sampler", daemon=True)
        self.client = redis.Redis.from_url(broker)
        self.seen: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.5):
            for rid, score in self.client.zrange(LIMITER_LOG, 0, -1, withscores=True):
                self.seen.setdefault(rid.decode(), score / 1e6)

    def stop(self) -> dict[str, float]:
        self.halt.set()
        self.join()
        self.client.close()
        return self.seen


def max_in_window(times: list[float], weights: list[int]) -> int:
    """The largest total of events inside any window (t - 60 s, t]: what a provider's sliding window holds."""
    best = acc = j = 0
    for i, t in enumerate(times):
        acc += weights[i]
        while times[j] <= t - WINDOW_S:
            acc -= weights[j]
            j += 1
        best = max(best, acc)
    return best


def mean_window(ok: list[tuple[float, int]], t0: float, end: float, *, tokens: bool) -> float:
    """What a provider's 60 s window held on average while the period's windows were full-length: the mean over
    t in [t0 + 60 s, end] of the requests (or tokens) in (t - 60 s, t]. A sliding log refills its window in bursts,
    so a plain count over a period that is not a whole number of spans would swing by up to a whole limit.
    With a period of 60 s or less, the one window that starts at t0.
    """
    lo, hi = t0 + WINDOW_S, end
    if hi <= lo:
        return float(sum(n if tokens else 1 for t, n in ok if t < t0 + WINDOW_S))
    # Arrival s is in the window ending at t for t in [s, s + 60 s): weight it by that interval's overlap.
    held = sum((n if tokens else 1) * max(0.0, min(s + WINDOW_S, hi) - max(s, lo)) for s, n in ok)
    return held / (hi - lo)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, broker: str, admin: str) -> None:
        self.args, self.tmp, self.broker, self.admin = args, tmp, broker, admin
        self.config = tmp / "switchyard.toml"
        self.config.write_text(
            f'[models."{MODEL}"]\nrpm = {args.rpm}\ntpm = {args.tpm}\nconcurrency = {args.threads}\n'
        )
        self.jobs = make_jobs(args.jobs, args.prompt_chars, args.max_tokens)

    def database(self, mode: str) -> tuple[str, str]:
        name = f"sy_bench_rl_{mode}_{uuid.uuid4().hex[:6]}"
        services.ensure_database(self.admin, name)
        base, _, query = self.admin.partition("?")
        url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
        upgrade(url)
        return name, url

    def start_server(self, log: Path) -> tuple[subprocess.Popen[bytes], str]:
        cmd = [
            sys.executable,
            "-m",
            "switchyard.localapi",
            "openai",
            "--port",
            "0",
            "--rpm",
            str(self.args.rpm),
            "--tpm",
            str(self.args.tpm),
            "--delay",
            str(self.args.delay),
        ]
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("SWITCHYARD_LOCALAPI_URL="):
            proc.kill()
            raise RuntimeError(f"local server did not start; see {log}")
        return proc, line.split("=", 1)[1]

    def start_workers(self, mode: str, env: dict[str, str], handles: list[WorkerHandle]) -> None:
        """Start the workers into ``handles`` (the caller's, so it can stop them if one fails to start)."""
        if mode == "switchyard":
            cmd = [sys.executable, "-m", "switchyard.cli", "worker", MODEL, "--engine", "api"]
        else:
            cmd = [
                sys.executable,
                str(REPO / "bench" / "_celery_ratelimit_worker.py"),
                MODEL,
                "--rate-limit",
                f"{self.args.rpm}/m",
            ]
        for i in range(self.args.workers):
            log = self.tmp / f"worker-{mode}-{i}.log"
            with open(log, "wb") as out:
                handles.append(
                    WorkerHandle(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT), log, MODEL)
                )
        for h in handles:
            h.wait_ready(timeout=180)  # 8 interpreters importing the SDKs at once on a small machine

    def run(self, mode: str) -> Run:
        r = redis.Redis.from_url(self.broker)
        r.flushdb()  # queues, the limiter's window, the circuit: nothing left from another run
        dbname, database = self.database(mode)
        server, url = self.start_server(self.tmp / f"server-{mode}.log")
        note(f"{mode}: database and local server ready; starting {self.args.workers} workers")
        root = url.rsplit("/v1", 1)[0]
        workers: list[WorkerHandle] = []
        try:
            env = worker_env(self.broker, database, self.config, OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-bench")
            self.start_workers(mode, env, workers)
            settings = Settings.from_env({"SWITCHYARD_CONFIG": str(self.config)})
            client = Client(broker_url=self.broker, database_url=database, settings=settings)
            batch = f"rate-limit-{mode}"
            note(f"{mode}: {len(workers)} workers ready; submitting {len(self.jobs)} jobs")
            sampler = AdmissionSampler(self.broker)
            sampler.start()
            started = time.time()
            client.submit_many(self.jobs, batch=batch)
            client.close()
            # The measured period starts at the first request the server sees and lasts --seconds.
            first = None
            while first is None:
                calls = [x["time"] for x in get_json(root + "/_requests")["requests"] if x["path"] == COMPLETIONS]
                first = min(calls, default=None)
                time.sleep(0.2)
            time.sleep(max(0.0, first + self.args.seconds - time.time()))
            note(
                f"{mode}: first request at +{first - started:.1f}s; measured {self.args.seconds:g}s, "
                "stopping workers (SIGTERM)"
            )
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGTERM)
            for w in workers:
                w.stop(timeout=60)
            note(f"{mode}: workers stopped")
            log = get_json(root + "/_requests")["requests"]
            return self.analyse(mode, log, database, sampler.stop())
        finally:
            for w in workers:
                w.stop(timeout=60)
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
            get_engine(database).dispose()
            services.drop_database(self.admin, dbname)
            r.flushdb()
            r.close()

    def analyse(self, mode: str, log: list[dict[str, Any]], database: str, admitted: dict[str, float]) -> Run:
        engine = get_engine(database)
        with engine.connect() as conn:
            rows = conn.execute(select(Job.id, Job.request)).all()  # the run's own database: its batch only
            states = dict(conn.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            models = dict(conn.execute(select(Job.model, func.count()).group_by(Job.model)).all())
            ledger = dict(
                conn.execute(select(LedgerEntry.job_id, LedgerEntry.input_tokens + LedgerEntry.output_tokens)).all()
            )
        if set(models) != {MODEL}:
            raise RuntimeError(f"jobs were routed to {models}, not all to {MODEL}")
        # The server's own arithmetic (prompt chars / 4 + a completion fixed by the prompt's hash and max_tokens)
        # on the exact messages the worker sent: the usage each accepted call returned.
        tokens: dict[str, int] = {}
        by_job: dict[uuid.UUID, int] = {}
        hashes: dict[str, str] = {}  # job id -> prompt hash
        for job_id, request in rows:
            texts = prompt_texts({"messages": request["messages"]})
            done = simulate(ParsedCall(MODEL, texts, request.get("max_tokens")))
            hashes[str(job_id)] = prompt_hash("\n".join(texts))
            tokens[hashes[str(job_id)]] = by_job[job_id] = done.prompt_tokens + done.completion_tokens
        calls = sorted((x for x in log if x["path"] == COMPLETIONS), key=lambda x: x["time"])
        # Each admission ("job:attempt") arrived as the first call with that job's prompt after it was admitted.
        arrivals: dict[str, list[float]] = {}
        for x in calls:
            arrivals.setdefault(x["prompt_sha256"], []).append(x["time"])
        admissions = []
        for rid, at in admitted.items():
            later = [t for t in arrivals.get(hashes.get(rid.split(":")[0], ""), []) if t >= at]
            if later:
                admissions.append((at, later[0] - at))
        ok = [(x["time"], tokens.get(x["prompt_sha256"], 0)) for x in calls if x["status"] == 200]
        checked = [j for j in ledger if j in by_job]
        return Run(
            mode=mode,
            seconds=self.args.seconds,
            sent=[x["time"] for x in calls],
            ok=ok,
            limited=[x["time"] for x in calls if x["status"] == 429],
            states=states,
            unmatched=sum(1 for x in calls if x["status"] == 200 and x["prompt_sha256"] not in tokens),
            ledger_checked=len(checked),
            ledger_mismatch=sum(1 for j in checked if ledger[j] != by_job[j]),
            admissions=sorted(admissions),
        )


def slot_gaps(run: Run, rpm: int) -> list[float]:
    """Request k and request k-rpm may never share a 60 s window; their distance is the span a slot took."""
    return [run.sent[k] - run.sent[k - rpm] for k in range(rpm, len(run.sent))]


def verdict(run: Run, rpm: int) -> str:
    """The issue's three targets, judged on one run."""
    t0 = run.sent[0] if run.sent else 0.0
    achieved = mean_window(run.ok, t0, t0 + run.seconds, tokens=False) / rpm * 100
    gaps = slot_gaps(run, rpm)
    steady = WINDOW_S / statistics.median(gaps) * 100 if gaps else achieved
    worst = max_in_window(run.sent, [1] * len(run.sent))
    ok = {True: "met", False: "NOT met"}
    return (
        f"targets ({run.mode}): >= 97 % of the limit {ok[min(achieved, steady) >= 97]} (mean window "
        f"{achieved:.1f}%, steady state {steady:.1f}%); never above 100 % in a 60 s window {ok[worst <= rpm]} "
        f"(max {worst} sent); zero 429s {ok[not run.limited]} ({len(run.limited)})"
    )


def figures(run: Run, rpm: int, tpm: int) -> dict[str, str]:
    """One column of the table."""
    t0 = run.sent[0] if run.sent else 0.0
    end = t0 + run.seconds
    in_period = [(t, n) for t, n in run.ok if t < end]
    req_pct = mean_window(run.ok, t0, end, tokens=False) / rpm * 100
    tok_pct = mean_window(run.ok, t0, end, tokens=True) / tpm * 100
    first = [(t, n) for t, n in run.ok if t < t0 + WINDOW_S]
    max_sent = max_in_window(run.sent, [1] * len(run.sent))
    max_ok = max_in_window([t for t, _ in run.ok], [1] * len(run.ok))
    max_tok = max_in_window([t for t, _ in run.ok], [n for _, n in run.ok])
    gaps = slot_gaps(run, rpm)
    steady = (
        f"{WINDOW_S / statistics.median(gaps) * 100:.1f}% (n={len(gaps)}, median {statistics.median(gaps):.3f}"
        f" s, min {min(gaps):.3f} s)"
        if gaps
        else f"n/a (<= {rpm} requests)"
    )
    failed = run.states.get("failed", 0) + run.states.get("dead", 0)
    delays = sorted(d for _, d in run.admissions)
    return {
        "requests accepted in the period": f"{len(in_period):,}",
        "achieved requests/min (mean 60 s window), % of limit": f"{req_pct:.1f}%",
        "achieved tokens/min (mean 60 s window), % of limit": f"{tok_pct:.1f}%",
        "first 60 s: requests, tokens (% of limit)": (
            f"{len(first) / rpm * 100:.1f}%, {sum(n for _, n in first) / tpm * 100:.1f}%"
        ),
        "steady state sent, 60 s / gap(k, k-limit)": steady,
        "max requests SENT in any 60 s window": f"{max_sent:,} ({max_sent / rpm * 100:.1f}%)",
        "max requests ACCEPTED in any 60 s window": f"{max_ok:,} ({max_ok / rpm * 100:.1f}%)",
        "max tokens accepted in any 60 s window": f"{max_tok:,} ({max_tok / tpm * 100:.1f}%)",
        "429s received: measured period, whole run": f"{sum(t < end for t in run.limited):,}, {len(run.limited):,}",
        "jobs failed (failed + dead)": f"{failed:,}",
        "jobs succeeded / still queued or running": (
            f"{run.states.get('succeeded', 0):,} / {run.states.get('queued', 0) + run.states.get('running', 0):,}"
        ),
        "admission -> arrival delay p50 / p99 / max": (
            f"{delays[len(delays) // 2] * 1000:.0f} / {delays[int(len(delays) * 0.99)] * 1000:.0f}"
            f" / {delays[-1] * 1000:.0f} ms (n={len(delays)})"
            if delays
            else "n/a (no limiter)"
        ),
        "token check vs ledger: jobs, mismatches": f"{run.ledger_checked:,}, {run.ledger_mismatch}"
        + (f" ({run.unmatched} calls unmatched)" if run.unmatched else ""),
    }


def print_table(runs: list[Run], args: argparse.Namespace) -> None:
    titles = {"switchyard": "Switchyard global limiter", "celery": f"Celery rate_limit={args.rpm}/m per worker"}
    cols = [figures(r, args.rpm, args.tpm) for r in runs]
    width = max(len(k) for k in cols[0])
    colw = [max(len(titles[r.mode]), *(len(v) for v in c.values())) for r, c in zip(runs, cols, strict=True)]
    print(
        f"limits {args.rpm} requests/min, {args.tpm:,} tokens/min; {args.workers} worker processes x "
        f"{args.threads} threads; server delay {args.delay} s; jobs ~{args.prompt_chars // 4}+<= {args.max_tokens}"
        f" tokens; measured period {args.seconds:g} s from the first request"
    )
    print(" " * width + "   " + "   ".join(titles[r.mode].ljust(w) for r, w in zip(runs, colw, strict=True)))
    for key in cols[0]:
        print(key.ljust(width) + "   " + "   ".join(c[key].ljust(w) for c, w in zip(cols, colw, strict=True)))
    for line in (
        "achieved: the mean of the 60 s windows ending inside the measured period (for a 60 s period, its one "
        "window), counting the server's 200s.",
        "Both limiters are sliding logs: into an empty window they admit the whole limit at once (here within a few "
        "seconds), then nothing until that burst leaves the window, so the first 60 s read 100 % whatever the "
        "limiter's margin.",
        f"steady state: 60 s / the median gap between arrivals k and k-{args.rpm}, the span at which a slot was "
        "actually reused (needs requests after the first window: with --seconds 60, the ones sent while the "
        "workers drain after SIGTERM).",
        "SENT: every call that reached the server (what our side offered); ACCEPTED: its 200s, which the server "
        "itself keeps within the limit. admission -> arrival: Redis TIME when the limiter admitted a request "
        "(sampled from its log) to the server's arrival time.",
    ):
        print("  " + line)
    for run in runs:
        print(verdict(run, args.rpm))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured period of each run")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--threads", type=int, default=16, help="concurrency of each worker process")
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--tpm", type=int, default=150_000)
    ap.add_argument("--delay", type=float, default=0.2, help="the server's latency per call, seconds")
    ap.add_argument("--prompt-chars", type=int, default=800)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--only", choices=["switchyard", "celery"])
    ap.add_argument("--dump", help="also write every run's raw arrivals and admissions to this JSON file")
    args = ap.parse_args()

    base = Settings.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="sy-bench-rl-"))
    os.chmod(tmp, 0o755)  # embedded PostgreSQL may run as another user and needs to reach its directory
    embedded_redis = embedded_pg = False
    try:
        if base.broker_url:
            broker = base.broker_url.rsplit("/", 1)[0] + "/12"
        else:
            broker, embedded_redis = services.start_embedded_redis(tmp / "redis", persistent=False), True
        if base.database_url:
            admin = base.database_url.rsplit("/", 1)[0] + "/postgres"
        else:
            admin, embedded_pg = services.start_embedded_postgres(tmp / "pg", database="postgres"), True
        bench = Bench(args, tmp, broker, admin)
        runs = [bench.run(mode) for mode in ("switchyard", "celery") if args.only in (None, mode)]
        if args.dump:
            Path(args.dump).write_text(json.dumps([asdict(r) for r in runs]))
        print_table(runs, args)
    finally:
        if embedded_redis:
            services.stop_embedded_redis(tmp / "redis")
        if embedded_pg:
            services.stop_embedded_postgres(tmp / "pg")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
