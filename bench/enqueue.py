"""Producer throughput: ``submit_many`` of 100,000 short-form jobs (~1 KB each) beside a loop of Celery's
``apply_async`` on the same jobs, in the same run, against the same Redis and PostgreSQL.

    .venv/bin/python bench/enqueue.py [--jobs 100000] [--loop-jobs 20000]

Uses SWITCHYARD_BROKER_URL / SWITCHYARD_DATABASE_URL when set (a scratch Redis db and a scratch database are
created and dropped), else embedded servers. Prints jobs/s of both and the ratio. The apply_async loop sends the
same job-id messages to the same queue (it does no classification and no database writes: a lower bound on what
a producer built on it would cost).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scratch  # noqa: E402
import redis  # noqa: E402

from producer.client import Client  # noqa: E402
from switchyard.settings import Settings  # noqa: E402

WORDS = [
    "report",
    "invoice",
    "quarterly",
    "customer",
    "shipment",
    "analysis",
    "forecast",
    "revenue",
    "policy",
    "summary",
    "section",
    "table",
    "contract",
    "delivery",
    "schedule",
    "warehouse",
    "region",
    "growth",
    "budget",
    "review",
    "meeting",
    "notes",
    "draft",
]


def make_jobs(n: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        words = []
        size = 0
        while size < 1000:
            w = rng.choice(WORDS)
            words.append(w)
            size += len(w) + 1
        jobs.append({"custom_id": f"doc-{i}", "prompt": "Summarise: " + " ".join(words), "max_tokens": 200})
    return jobs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--loop-jobs", type=int, default=20_000, help="jobs for the apply_async loop")
    args = ap.parse_args()

    base = Settings.from_env()
    with _scratch.scratch_services("enqueue", 11) as (broker, database, _):
        r = redis.Redis.from_url(broker)
        jobs = make_jobs(args.jobs)
        kb = sum(len(j["prompt"]) for j in jobs) / len(jobs) / 1024
        client = Client(broker_url=broker, database_url=database, settings=base)
        servers = ("postgres", "redis-server")
        cpu0, kids0, servers0 = *_scratch.own_cpu(), _scratch.cpu_seconds(servers)
        t0 = time.perf_counter()
        client.submit_many(jobs, batch="bench")
        submit_s = time.perf_counter() - t0
        cpu1, kids1, servers1 = *_scratch.own_cpu(), _scratch.cpu_seconds(servers)
        depth = sum(r.llen(k) for k in r.keys("*") if r.type(k) == b"list")
        assert depth == args.jobs, f"expected {args.jobs} messages, found {depth}"

        from workers.app import create_app

        app = create_app(base.with_urls(broker, database))
        r.flushdb()
        n = min(args.loop_jobs, args.jobs)
        t0 = time.perf_counter()

        @app.task(name="switchyard.run_job")
        def run_job(job_id: str) -> None:  # the same task name; never executed here
            return None

        with app.producer_or_acquire() as producer:
            for _ in range(n):
                run_job.apply_async(args=[str(uuid.uuid4())], queue="llama-3-70b", producer=producer)
        loop_s = time.perf_counter() - t0
        submit_rate = args.jobs / submit_s
        loop_rate = n / loop_s
        print(f"jobs: {args.jobs} short-form, ~{kb:.2f} KB each")
        print(
            f"submit_many (validate + classify + Postgres + pipelined publish): {submit_rate:,.0f} jobs/s "
            f"({submit_s:.1f}s)"
        )
        print(f"apply_async loop            (publish only, {n} jobs):             {loop_rate:,.0f} jobs/s")
        print(f"ratio: {submit_rate / loop_rate:.1f}x")
        per_job = [(cpu1 - cpu0), (kids1 - kids0), (servers1 - servers0)]
        print(
            "CPU per submitted job: {:.0f} us submitting process, {:.0f} us classifier processes, "
            "{:.0f} us PostgreSQL + Redis servers (every such process on the machine); {:.0f} us in all".format(
                *(c / args.jobs * 1e6 for c in per_job), sum(per_job) / args.jobs * 1e6
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
