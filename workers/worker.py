"""``switchyard worker MODEL``: a Celery worker holding one warm backend for one model's queue.

Pool: Celery's *threads* pool in the worker's main process. One process per engine (vLLM must not be forked
after CUDA is initialised, and prefork's daemonic children cannot start vLLM's own processes); the engine
runs on its own event-loop thread (BackendRunner) and ``concurrency`` task threads keep that many requests in
flight, so vLLM's continuous batching (or an API's concurrency) is fed from the queue. The engine is built
before the worker starts consuming, in this process, never in ``worker_process_init`` (not sent by the threads
pool, and killed after 4 s).

If the engine dies, in-flight jobs are handed back to the queue, the worker shuts down and the process exits
with status 3 so that its supervisor restarts it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import redis

from producer.publish import BulkPublisher, Outgoing
from switchyard.budget import Budgets
from switchyard.db import get_engine
from switchyard.errors import ConfigError
from switchyard.settings import Settings
from workers.app import create_app
from workers.broker import TRANSPORT
from workers.engines.runner import BackendRunner
from workers.executor import Executor
from workers.groupcommit import BatchedRecorder
from workers.mapreduce import MapReduce
from workers.tasks import register

log = logging.getLogger("switchyard.worker")

EXIT_ENGINE_DEAD = 3
ENGINES_SELF_HOSTED = ("vllm", "vllm-remote", "simulated")
ENGINES_COMMERCIAL = ("api", "simulated")


@dataclass
class WorkerOptions:
    model: str
    engine: str | None = None  # vllm | vllm-remote | simulated | api (default: by provider)
    concurrency: int | None = None  # in-flight jobs; default from the catalog
    hostname: str | None = None
    loglevel: str = "INFO"
    model_path: str | None = None  # overrides the catalog's engine.model_path
    extra: dict[str, Any] = field(default_factory=dict)


def build_backend(settings: Settings, opts: WorkerOptions) -> Any:
    """The backend for this worker, from the catalog and the options. Imports lazily (vLLM is optional)."""
    spec = settings.catalog.model(opts.model)
    kind = opts.engine or ("vllm" if spec.self_hosted else "api")
    if spec.self_hosted:
        if kind == "simulated":
            from workers.engines.simulated import SimulatedEngine, preset

            # The pace and fault injection come from SWITCHYARD_SIM_* in this process's environment, read by
            # Settings at start-up: tests and benchmarks set them per worker process they start.
            return SimulatedEngine(preset(opts.model, max_num_seqs=spec.engine.max_num_seqs,
                                          max_model_len=spec.engine.max_model_len),
                                   time_scale=settings.sim_time_scale, die_after=settings.sim_die_after)
        if kind == "vllm":
            from workers.engines.vllm_local import InProcessVLLMBackend

            args = spec.engine.model_dump()
            if opts.model_path:
                args["model_path"] = opts.model_path
            if not args.get("model_path"):
                raise ConfigError(f"models.{opts.model}.engine.model_path is not set (or pass --model-path); "
                                  "use --engine simulated to run without a GPU")
            return InProcessVLLMBackend(served_model=opts.model, **args)
        if kind == "vllm-remote":
            from workers.engines.vllm_remote import RemoteVLLMBackend

            if not spec.engine.base_urls:
                raise ConfigError(f"models.{opts.model}.engine.base_urls is empty")
            return RemoteVLLMBackend(spec.engine.served_model_name or spec.provider_model, spec.engine.base_urls,
                                     timeout_s=spec.timeout_s)
        raise ConfigError(f"engine {kind!r} cannot serve self-hosted {opts.model}; use one of "
                          f"{', '.join(ENGINES_SELF_HOSTED)}")
    if kind == "simulated":
        # The API worker's own path (SDK, limiter, ledger) against a local stand-in of the provider, started
        # and stopped with this worker; nothing reaches the provider whatever keys and base URLs are set.
        from workers.providers.simulated_api import SimulatedProviderBackend

        return SimulatedProviderBackend(spec)
    if kind != "api":
        raise ConfigError(f"engine {kind!r} cannot serve commercial {opts.model}; use one of "
                          f"{', '.join(ENGINES_COMMERCIAL)}")
    if spec.provider == "openai":
        from workers.providers.openai_api import OpenAIBackend

        return OpenAIBackend(spec.provider_model, api_key=settings.openai_api_key,
                             base_url=settings.openai_base_url, timeout_s=spec.timeout_s)
    from workers.providers.anthropic_api import AnthropicBackend

    return AnthropicBackend(spec.provider_model, api_key=settings.anthropic_api_key,
                            base_url=settings.anthropic_base_url, timeout_s=spec.timeout_s)


def quiet_per_task_logs(loglevel: str) -> None:
    """Celery logs every task it receives and every success at INFO: a line and ~0.1 ms of CPU per job
    (measured), for what Postgres already records (each job's state, timings, worker). Failures, retries'
    warnings and everything of ours stay; at DEBUG, Celery's lines come back. Call before the worker starts
    (Celery reads the levels once, when it builds its task tracers and strategies)."""
    if logging.getLevelName(loglevel.upper()) != logging.DEBUG:
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(logging.WARNING)


def quiet_settled_notices() -> None:
    """Celery announces at every broker connection loss that worker_cancel_long_running_tasks_on_connection_loss
    will default to True in 6.0; celeryconfig sets it (to False, with its reason), so the notice is only noise in
    an incident's logs."""
    warnings.filterwarnings("ignore", message=r"\s*In Celery 5\.1 we introduced an optional breaking change")


class WorkerProcess:
    """Everything one worker process holds: the warm backend, the executor, the Celery worker."""

    def __init__(self, settings: Settings, opts: WorkerOptions) -> None:
        broker_url, database_url = settings.require_urls()
        self.settings = settings
        self.opts = opts
        self.spec = settings.catalog.model(opts.model)
        self.concurrency = opts.concurrency or self.spec.concurrency
        self.name = opts.hostname or f"{opts.model}-{os.getpid()}@{socket.gethostname()}"
        self.redis = redis.Redis.from_url(broker_url)
        self.engine = get_engine(database_url, pool_size=min(self.concurrency, 20), pre_ping=False)
        self.backend = build_backend(settings, opts)
        self.runner = BackendRunner(self.backend)
        self.dead_reason: str | None = None
        self._dead_once = threading.Lock()
        self.app = create_app(settings)
        # kombu's Redis transport without a client per ack and a round trip per ack (workers/broker.py).
        self.app.conf.broker_transport = TRANSPORT
        self.executor: Executor | None = None
        # Claims and results of many jobs per transaction (workers/groupcommit.py); started with consuming.
        self.recorder = BatchedRecorder(self.engine, self.name)
        register(self.app, self._executor, self._on_engine_dead)

    def _executor(self) -> Executor:
        assert self.executor is not None, "worker not started"
        return self.executor

    def _republish(self, job_id: uuid.UUID, model: str, priority: int) -> None:
        BulkPublisher(self.redis).publish([Outgoing(str(job_id), self.settings.catalog.model(model).queue,
                                                    priority)])

    def _build_executor(self) -> Executor:
        limiter = circuit = budgets = pii_scan = None
        if not self.spec.self_hosted:
            from producer.pii import scan
            from workers.circuit import CircuitBreaker
            from workers.ratelimit import GlobalRateLimiter

            pii_scan = scan
            if self.spec.rpm and self.spec.tpm:
                limiter = GlobalRateLimiter(self.redis, self.opts.model, self.spec.rpm, self.spec.tpm)
            circuit = CircuitBreaker(self.redis, self.spec.provider, failure_threshold=self.spec.circuit_failures,
                                     window_s=self.spec.circuit_window_s, cooldown_s=self.spec.circuit_cooldown_s)
            budgets = Budgets(self.settings.catalog.budgets, self.engine)
        return Executor(
            catalog=self.settings.catalog, model=self.opts.model, backend_kind=getattr(self.backend, "kind", "?"),
            runner=self.runner, recorder=self.recorder, republish=self._republish,
            budgets=budgets, limiter=limiter, circuit=circuit, pii_scan=pii_scan,
            mapreduce=MapReduce(self.engine, self.settings.catalog, self._republish, self.name),
        )

    def _on_engine_dead(self, reason: str) -> None:
        if not self._dead_once.acquire(blocking=False):
            return
        self.dead_reason = reason
        log.error("engine dead (%s): handing jobs back to the queue and exiting for a restart", reason)

        def stop() -> None:
            time.sleep(0.5)  # let the other in-flight tasks reject their messages too
            # Nothing in flight can finish on a dead engine: skip the soft-shutdown wait (Celery sleeps its
            # whole length whenever a request is still active) and hand everything back at once.
            self.app.conf.worker_soft_shutdown_timeout = 0.0
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=stop, name="engine-dead-shutdown", daemon=True).start()

    def run(self) -> int:
        """Load the engine, consume until shut down; the process exit status."""
        started = time.monotonic()
        load_s = 0.0
        if hasattr(self.backend, "load"):
            # vLLM (0.8.0-0.8.1) builds its engine only on the main thread: load it here, serve it there.
            load_s = self.backend.load()
        load_s += self.runner.start(timeout=max(600.0, self.spec.timeout_s))
        self.executor = self._build_executor()
        log.info("worker ready: model=%s queue=%s engine=%s simulated=%s load_s=%.2f concurrency=%s",
                 self.opts.model, self.spec.queue, getattr(self.backend, "kind", "?"),
                 getattr(self.backend, "simulated", False), load_s, self.concurrency)
        if getattr(self.backend, "simulated", False):
            log.warning("SIMULATED engine for %s: results are marked simulated, no real model runs",
                        self.opts.model)
        from celery.signals import worker_ready

        def announce(**_: Any) -> None:
            log.info("worker consuming: model=%s queue=%s node=%s", self.opts.model, self.spec.queue, self.name)

        worker_ready.connect(announce, weak=False)
        worker = self.app.Worker(
            hostname=self.name, pool_cls="threads", concurrency=self.concurrency, queues=[self.spec.queue],
            loglevel=self.opts.loglevel, without_mingle=True, without_gossip=True, optimization="fair",
            # Per-task events cost ~1 ms of CPU per job (measured); Flower still sees the worker through
            # its heartbeats, and Postgres records every job's state anyway.
            task_events=self.settings.catalog.task_events,
        )
        from workers.reaper import Reaper

        reaper = Reaper(self.engine, self.redis, self.settings.catalog)
        quiet_per_task_logs(self.opts.loglevel)
        quiet_settled_notices()
        reaper.start()
        self.recorder.start()
        try:
            worker.start()
        finally:
            reaper.stop()
            self.recorder.stop()  # commits what finished tasks are waiting for
            self.runner.stop(timeout=30)
            log.info("worker %s stopped after %.1fs", self.name, time.monotonic() - started)
        if self.dead_reason is not None:
            return EXIT_ENGINE_DEAD
        return int(worker.exitcode or 0)
