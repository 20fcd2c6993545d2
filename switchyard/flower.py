"""`switchyard flower`: Flower on the workers' own Celery configuration, always behind HTTP basic auth.

Flower runs in-process on the app from ``workers.app.create_app``, so its broker URL and transport options
(visibility timeout, the ten priority sub-lists) are the workers' own. Flower 2.x reads Redis queue lengths
directly with those options (``--broker-api`` is only for RabbitMQ's management API), and its Broker tab here
lists every configured model queue, not only those a live worker consumes. Flower keeps no queue-length
gauge for Prometheus (flower#1191): :func:`queue_depth_lines` reads the lists instead.

Flower leaves ``/metrics`` and ``/healthcheck`` open without auth (for Prometheus and load balancers); they
show worker and task names and counts, never job text. The default bind to 127.0.0.1 keeps them local.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from switchyard.errors import ConfigError
from switchyard.settings import Settings

log = logging.getLogger("switchyard.flower")

AUTH_ENV = "SWITCHYARD_FLOWER_AUTH"
DEFAULT_USER = "admin"


def resolve_auth(flag: str | None, configured: str | None) -> tuple[str, bool]:
    """``(user:password, generated)``: the flag, else ``configured`` (:attr:`Settings.flower_auth`, i.e.
    ``SWITCHYARD_FLOWER_AUTH``), else a fresh random password."""
    value = (flag or configured or "").strip()
    if not value:
        return f"{DEFAULT_USER}:{secrets.token_urlsafe(18)}", True
    user, sep, password = value.partition(":")
    if not (sep and user and password):
        raise ConfigError(f"--basic-auth / {AUTH_ENV} must be user:password")
    return value, False


def queue_depths_by_model(settings: Settings) -> dict[str, int]:
    """Messages waiting per model queue, all priority sub-lists summed."""
    import redis

    from producer.queues import queue_depths

    broker_url, _ = settings.require_urls()
    client = redis.Redis.from_url(broker_url)
    try:
        return queue_depths(client, [m.queue for m in settings.catalog.models.values()])
    finally:
        client.close()


def queue_depth_lines(settings: Settings) -> list[str]:
    depths = queue_depths_by_model(settings)
    return ["queue            waiting"] + [f"{q:<16} {n:>7}" for q, n in depths.items()]


def print_queue_depths(settings: Settings, stream: TextIO = sys.stdout) -> None:
    print("\n".join(queue_depth_lines(settings)), file=stream)


class _AllConfiguredQueues:
    """Mixin for Flower's queue views: the configured model queues plus whatever live workers consume.

    Stock Flower shows only queues that a live worker consumes; the queue of a model whose workers are all
    down is the one growing unseen, so it must stay on the page.
    """

    def get_active_queue_names(self) -> list[str]:
        configured = {q.name for q in self.capp.conf.task_queues or []}  # type: ignore[attr-defined]
        return sorted(configured | set(super().get_active_queue_names()))  # type: ignore[misc]


def _flower_app(capp: Any, options: Any, tornado_settings: dict[str, Any]) -> Any:
    from flower.api.tasks import GetQueueLengths
    from flower.app import Flower
    from flower.views.broker import BrokerView

    app = Flower(capp=capp, options=options, **tornado_settings)
    replaced = {cls: type(f"Switchyard{cls.__name__}", (_AllConfiguredQueues, cls), {})
                for cls in (BrokerView, GetQueueLengths)}
    for rule in app.wildcard_router.rules:
        rule.target = replaced.get(rule.target, rule.target)
    return app


def run_flower(capp: Any, *, port: int, address: str, auth: str) -> None:
    """Serve Flower until SIGTERM or Ctrl-C, as ``celery flower`` does, with ``auth`` always required."""
    import atexit
    import signal

    from flower import command
    from flower.options import default_options as options
    from flower.urls import settings as tornado_settings

    # FLOWER_* variables work as with `celery flower` (FLOWER_PERSISTENT, FLOWER_MAX_TASKS, FLOWER_URL_PREFIX,
    # FLOWER_AUTH ...); the port, the address and basic auth are ours and always win.
    command.apply_env_options()
    options.port = port
    options.address = address
    options.basic_auth = [auth]  # set directly: tornado would split a password with a comma in it
    command.extract_settings()
    command.setup_logging()
    if address not in ("127.0.0.1", "localhost", "::1") and not options.certfile:
        # Basic auth over plain HTTP sends the password readable to anyone on the path.
        log.warning("Flower listens on %s without TLS: put it behind an HTTPS proxy, or set FLOWER_CERTFILE "
                    "and FLOWER_KEYFILE", address or "every interface")
    app = _flower_app(capp, options, tornado_settings)
    atexit.register(app.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    bound = app.start_http_server()
    prefix = f"/{options.url_prefix.strip('/')}/" if options.url_prefix else "/"
    print(f"Flower at http://{address}:{bound}{prefix} (user {auth.partition(':')[0]})", flush=True)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM via sys.exit above
        app.start()
    # Shutting down joins Flower's inspector threads, each possibly in a broadcast that waits out its timeout: a
    # second Ctrl-C meanwhile would land in the interpreter's thread join and print "Exception ignored ...
    # KeyboardInterrupt". We are stopping already, so further Ctrl-C and SIGTERM are let go.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    app.stop()


def cmd_flower(args: argparse.Namespace) -> int:
    from switchyard.cli import connected_settings
    from workers.app import create_app

    base = Settings.from_env()
    auth, generated = resolve_auth(args.basic_auth, base.flower_auth)  # bad input fails before any server starts
    settings = connected_settings(base, migrate=False)
    if generated:
        user, _, password = auth.partition(":")
        # Shown once, on the terminal only: never logged.
        print(f"Flower login: {user} / {password} (generated; choose one with --basic-auth or {AUTH_ENV})",
              file=sys.stderr, flush=True)
    print_queue_depths(settings)
    run_flower(create_app(settings), port=args.port, address=args.address, auth=auth)
    return 0


def start_flower(settings: Settings, port: int, auth: str, *, address: str = "127.0.0.1",
                 log: Path | None = None) -> subprocess.Popen[bytes]:
    """`switchyard flower` in a child process on the same servers and catalog as ``settings``.

    The credentials travel in the environment, not on the command line, where any local user could read them.
    """
    broker_url, database_url = settings.require_urls()
    env = dict(os.environ, SWITCHYARD_BROKER_URL=broker_url, SWITCHYARD_DATABASE_URL=database_url,
               SWITCHYARD_STATE_DIR=str(settings.state_dir), PYTHONUNBUFFERED="1")
    env[AUTH_ENV] = auth
    env.pop("SWITCHYARD_CONFIG", None)
    if settings.config_path:
        env["SWITCHYARD_CONFIG"] = settings.config_path
    cmd = [sys.executable, "-m", "switchyard.cli", "flower", "--port", str(port), "--address", address]
    if log is None:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(url: str, auth: str, timeout: float = 30.0, *,
               proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once Flower at ``url`` answers an authenticated request; raise if it never does or refuses us.

    ``proc`` (from :func:`start_flower`): fail at once if it exits instead of waiting out the timeout.
    """
    import httpx

    user, _, password = auth.partition(":")
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Flower exited with status {proc.returncode}")
        try:
            response = httpx.get(f"{url.rstrip('/')}/workers?json=1", auth=(user, password), timeout=2.0)
        except httpx.TransportError as exc:
            last = str(exc) or type(exc).__name__
        else:
            if response.status_code == 200:
                return
            if response.status_code == 401:
                raise RuntimeError(f"Flower at {url} refused the credentials for user {user}")
            last = f"HTTP {response.status_code}"
        time.sleep(0.2)
    raise TimeoutError(f"Flower at {url} not ready after {timeout:.0f}s ({last})")
