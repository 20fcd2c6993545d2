"""``switchyard demo``: the whole system end to end, on embedded services, in about a minute.

Starts PostgreSQL and Redis (embedded unless URLs are configured), local servers that speak the OpenAI and
Anthropic protocols (unless real keys are configured), real worker processes for all four queues, submits the
bundled mixed workload, shows progress, prints the report, writes the results JSONL and the report PNG to a
folder it names, and stops everything it started (``--keep`` leaves it all running, with Flower).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from producer.classify_pool import warm_detectors
from producer.client import Client
from switchyard import services
from switchyard.settings import Settings
from switchyard.workload import generate
from workers.providers.simulated_api import SIMULATED_DELAY_S

MODELS = ("llama-3-70b", "mistral-7b", "gpt-4-turbo", "claude-3-opus")
READY = "worker consuming"


class Demo:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started_services: list[str] = []
        self.settings = Settings.from_env()
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.out = Path(args.out or f"switchyard-demo-{stamp}").resolve()
        self.batch = f"demo-{stamp}"
        self.logs = self.out / "logs"

    # --- services -------------------------------------------------------------------------------------
    def start_services(self) -> Settings:
        from switchyard import db

        s = self.settings
        before = {"redis": s.broker_url is None and services.embedded_redis_running(s.state_dir / "redis"),
                  "postgres": s.database_url is None and services.embedded_postgres_running(s.state_dir / "postgres")}
        urls = services.ensure_services(s)
        os.environ["SWITCHYARD_BROKER_URL"] = urls.broker_url
        os.environ["SWITCHYARD_DATABASE_URL"] = urls.database_url
        self.started_services = [k for k in urls.embedded if not before[k]]
        db.upgrade(urls.database_url)
        where = {True: "embedded (started for this demo)", False: "configured"}
        self.console.print(f"PostgreSQL: {where['postgres' in urls.embedded]}; "
                           f"Redis: {where['redis' in urls.embedded]}")
        return s.with_urls(urls.broker_url, urls.database_url)

    def provider_env(self, settings: Settings) -> dict[str, str]:
        """Real keys when configured; otherwise local servers speaking each provider's protocol."""
        env = settings.provider_env()
        real = []
        if settings.openai_api_key and not settings.openai_base_url:
            real.append("OpenAI")
        else:
            url = self.start_api_server("openai", settings.catalog.model("gpt-4-turbo"),
                                        delay_s=SIMULATED_DELAY_S["openai"])
            env.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-local-simulated")
        if settings.anthropic_api_key and not settings.anthropic_base_url:
            real.append("Anthropic")
        else:
            url = self.start_api_server("anthropic", settings.catalog.model("claude-3-opus"),
                                        delay_s=SIMULATED_DELAY_S["anthropic"])
            env.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="sk-ant-local-simulated")
        simulated = [p for p in ("OpenAI", "Anthropic") if p not in real]
        self.console.print(Panel.fit(
            "[b yellow]SIMULATED[/]: GPU engines (llama-3-70b, mistral-7b) are simulated continuous-batching "
            "models of vLLM" + (f"; {' and '.join(simulated)} answered by local servers speaking their "
                                "protocols through the official SDKs" if simulated else "")
            + ".\nEvery simulated result is marked \"simulated\": true." + (
                f"\n[b red]REAL[/] provider calls (billed): {', '.join(real)}" if real else ""),
            border_style="yellow"))
        return env

    def start_api_server(self, dialect: str, spec: Any, delay_s: float) -> str:
        """A local server for one provider, in its own process, enforcing the catalog's RPM/TPM."""
        cmd = [sys.executable, "-m", "switchyard.localapi", dialect, "--port", "0", "--delay", str(delay_s)]
        if spec.rpm and spec.tpm:
            cmd += ["--rpm", str(spec.rpm), "--tpm", str(spec.tpm)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=self.args.keep)
        self.procs.append((f"{dialect}-server", proc))
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("SWITCHYARD_LOCALAPI_URL="):
            raise RuntimeError(f"local {dialect} server did not start")
        return line.split("=", 1)[1]

    # --- workers --------------------------------------------------------------------------------------
    def start_workers(self, settings: Settings, provider_env: dict[str, str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
        env.update(provider_env)
        env.update(SWITCHYARD_BROKER_URL=settings.broker_url or "", SWITCHYARD_DATABASE_URL=settings.database_url
                   or "", PYTHONUNBUFFERED="1")
        for model in MODELS:
            engine = "simulated" if settings.catalog.model(model).self_hosted else "api"
            cmd = [sys.executable, "-m", "switchyard.cli", "worker", model, "--engine", engine,
                   "--hostname", f"{model}@demo"]
            log = open(self.logs / f"worker-{model}.log", "wb")  # noqa: SIM115 (lives as long as the worker)
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=self.args.keep)
            self.procs.append((model, proc))
        deadline = time.monotonic() + 60
        pending = set(MODELS)
        while pending:
            for model, proc in self.procs:
                if model not in MODELS:
                    continue
                text = (self.logs / f"worker-{model}.log").read_text(errors="replace")
                if READY in text:
                    pending.discard(model)
                elif proc.poll() is not None:
                    raise RuntimeError(f"worker {model} exited {proc.returncode}; see {self.logs}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after 60s: {', '.join(sorted(pending))}")
            time.sleep(0.1)
        self.console.print(f"workers ready: {', '.join(MODELS)} (logs in {self.logs})")

    # --- run ------------------------------------------------------------------------------------------
    def run(self) -> int:
        t0 = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        settings = self.start_services()
        # The detectors compile while the workers start: a first compile in the middle of the paced
        # submission would hold it up and send a burst after (visible as queue wait in the report).
        warm = threading.Thread(target=warm_detectors, name="warm-detectors", daemon=True)
        warm.start()
        self.start_workers(settings, self.provider_env(settings))
        warm.join()
        client = Client(settings=settings)
        jobs = list(generate(self.args.jobs))
        rate = self.args.rate
        self.console.print(f"submitting {len(jobs)} jobs as batch [b]{self.batch}[/]"
                           + (f" at {rate:g} jobs/s (interactive arrivals)" if rate else " at once"))
        self.follow(client, jobs, rate)
        self.finish(client, settings)
        self.console.print(f"demo finished in {time.monotonic() - t0:.1f}s; output in [b]{self.out}[/]")
        return 0

    def follow(self, client: Client, jobs: list[dict[str, Any]], rate: float) -> None:
        """Submit (paced at ``rate`` jobs/s, or all at once) while showing per-model progress."""
        columns = (TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        start = time.monotonic()
        sent = 0
        with Progress(*columns, console=self.console) as bar:
            tasks: dict[str, Any] = {}
            submitted = bar.add_task("submitted", total=len(jobs))
            while True:
                due = len(jobs) if not rate else min(len(jobs), int((time.monotonic() - start) * rate) + 1)
                if due > sent:
                    client.submit_many(jobs[sent:due], batch=self.batch)
                    sent = due
                    bar.update(submitted, completed=sent)
                counts = client.status(self.batch)
                for model, states in sorted(counts["models"].items()):
                    if model not in tasks:
                        tasks[model] = bar.add_task(model, total=sum(states.values()))
                    done = sum(states.get(s, 0) for s in ("succeeded", "failed", "dead"))
                    bar.update(tasks[model], completed=done, total=sum(states.values()))
                if sent == len(jobs) and counts["done"] >= counts["total"]:
                    return
                time.sleep(0.1 if sent < len(jobs) else 0.25)

    def finish(self, client: Client, settings: Settings) -> None:
        from switchyard.db import get_engine
        from switchyard.report import build_report, latency_sample
        from switchyard.report_render import render_text, write_png

        results = self.out / "results.jsonl"
        with results.open("w", encoding="utf-8") as fh:
            for line in client.results(self.batch):
                fh.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")
        engine = get_engine(settings.database_url or "")
        report = build_report(engine, settings.catalog, batch=self.batch)
        render_text(report, self.console)
        png = self.out / "report.png"
        write_png(report, latency_sample(engine, report), png)
        (self.out / "report.json").write_text(report.model_dump_json(indent=2))
        self.console.print(f"results: {results}\nreport:  {png}")

    # --- teardown -------------------------------------------------------------------------------------
    def keep(self, settings: Settings) -> None:
        from switchyard.flower import start_flower

        auth = f"admin:{os.urandom(6).hex()}"
        start_flower(settings, 5555, auth, detach=True)
        self.console.print(Panel.fit(
            f"Left running (--keep):\n  Flower: http://127.0.0.1:5555  (login {auth})\n"
            f"  broker: {settings.broker_url}\n  database: {settings.database_url}\n"
            f"  workers: {', '.join(f'{m} (pid {p.pid})' for m, p in self.procs)}\n"
            "Stop them with: kill the worker pids, `switchyard services stop`."))

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.started_services:
            services.stop_embedded(self.settings)


def cmd_demo(args: argparse.Namespace) -> int:
    # Wide enough for the report's tables when output is not a terminal (CI logs, files).
    console = Console(width=None if sys.stdout.isatty() else 150)
    demo = Demo(args, console)
    try:
        code = demo.run()
        if args.keep:
            demo.keep(demo.settings.with_urls(os.environ.get("SWITCHYARD_BROKER_URL", ""),
                                              os.environ.get("SWITCHYARD_DATABASE_URL", "")))
        return code
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                demo.stop()
