"""Celery configuration for Switchyard, built from the typed settings at start-up.

``build(settings)`` returns the dict that ``workers.app.create_app`` loads; nothing here is computed at import
time, so the environment and the TOML catalog are read once, in one place (``switchyard.settings``).
Every worker, producer and Flower builds its configuration here, so they agree on the transport options
(above all the visibility timeout, which must be the same everywhere).
"""

from __future__ import annotations

from typing import Any

from switchyard.settings import Settings

#: The one task every worker runs; the queue (= the model) decides which backend runs it.
RUN_JOB_TASK = "switchyard.run_job"
#: Contract priority 0..9 (higher first) maps onto kombu's Redis priority lists (lower first).
PRIORITY_STEPS = list(range(10))


def redis_priority(contract_priority: int) -> int:
    """kombu's Redis transport pops lower numbers first; the contract says higher runs first."""
    return 9 - contract_priority


def transport_options(settings: Settings) -> dict[str, Any]:
    return {
        # A fetched message sits in kombu's "unacked" hash until acked; after this many seconds it is
        # put back on the queue. It must exceed the longest job (queue prefetch + inference), or a slow
        # job runs twice concurrently. Idempotent writes make the rare duplicate harmless, not free.
        "visibility_timeout": settings.catalog.visibility_timeout_s,
        # Contract priorities: one Redis list per level, popped in order.
        "queue_order_strategy": "priority",
        "priority_steps": PRIORITY_STEPS,
        # Sweep for expired unacked messages often, so that a job held by a SIGKILLed worker comes back
        # soon after its visibility timeout instead of minutes later.
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
        "socket_keepalive": True,
        "health_check_interval": 25,
    }


def build(settings: Settings) -> dict[str, Any]:
    # Imported here: producers read this module's constants only, and kombu costs a tenth of a second to import.
    from kombu import Exchange, Queue

    broker_url, _ = settings.require_urls()
    catalog = settings.catalog
    exchange = Exchange("switchyard", type="direct")
    queues = [Queue(m.queue, exchange, routing_key=m.queue) for m in catalog.models.values()]
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport_options(settings),
        "broker_connection_retry_on_startup": True,
        # JSON only: a pickle message from a compromised producer would be code execution on a GPU host.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "event_serializer": "json",
        # Results and costs live in Postgres (written idempotently with the job's state), not in a Celery
        # result backend: one source of truth, queryable, and no second write that could disagree.
        "result_backend": None,
        "task_ignore_result": True,
        # At-least-once: ack after the job's result is committed, so a crash mid-job re-runs it...
        "task_acks_late": True,
        # ...including when the process is killed by a signal or the OOM killer.
        "task_reject_on_worker_lost": True,
        # Failures are recorded in Postgres by the task itself; the message is then done.
        "task_acks_on_failure_or_timeout": True,
        # Prefetch exactly the in-flight concurrency: the threads pool runs `concurrency` jobs at once and
        # a deeper prefetch would only age messages towards the visibility timeout on one worker while
        # others sit idle.
        "worker_prefetch_multiplier": 1,
        "task_queues": queues,
        "task_default_queue": catalog.routing.default_model,
        "task_default_exchange": "switchyard",
        "task_create_missing_queues": False,
        "task_routes": {RUN_JOB_TASK: {"queue": catalog.routing.default_model}},
        "task_default_priority": redis_priority(0),
        "task_queue_max_priority": 9,
        # Per-task events feed Flower's task views; off by default (they cost worker CPU on every job).
        "worker_send_task_events": settings.catalog.task_events,
        "task_send_sent_event": False,
        # If the broker connection drops, running jobs finish: their results are committed to PostgreSQL before
        # the ack, and the redelivered (or reaped) message then finds the job done and is dropped. Cancelling
        # could not stop them anyway: the threads pool cannot kill a job (Celery logs a traceback per job).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # On SIGTERM (remapped to a cold shutdown by `switchyard worker`), in-flight jobs get this long to
        # finish; then the worker stops and their messages go back to the queue (kombu restores a closing
        # channel's unacknowledged messages). An idle worker stops at once.
        "worker_soft_shutdown_timeout": 30.0,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "broker_pool_limit": 20,
        "timezone": "UTC",
        "enable_utc": True,
    }
