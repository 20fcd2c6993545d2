"""Scratch services for the benchmark scripts: configured servers (a scratch Redis db and database, removed
afterwards) when SWITCHYARD_BROKER_URL / SWITCHYARD_DATABASE_URL are set, else embedded servers in a temporary
directory, stopped and removed afterwards."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from switchyard import services
from switchyard.db import get_engine, upgrade
from switchyard.settings import Settings


def with_path(url: str, path: str) -> str:
    """``url`` with its path (Redis db number, database name) replaced; the query (socket dir) kept."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{path}", parts.query, parts.fragment))


@contextmanager
def scratch_services(name: str, redis_db: int) -> Iterator[tuple[str, str, str | None]]:
    """(broker URL, database URL, embedded PostgreSQL data dir or None); everything removed on exit."""
    base = Settings.from_env()
    tmp = Path(tempfile.mkdtemp(prefix=f"sy-{name}-"))
    os.chmod(tmp, 0o755)  # embedded PostgreSQL runs as its own user when we are root
    try:
        if base.broker_url:
            broker = with_path(base.broker_url, str(redis_db))
        else:
            broker = services.start_embedded_redis(tmp / "redis", persistent=False)
        if base.database_url:
            admin = with_path(base.database_url, "postgres")
        else:
            admin = services.start_embedded_postgres(tmp / "pg", database="postgres")
        dbname = f"sy_{name}_{uuid.uuid4().hex[:6]}"
        services.ensure_database(admin, dbname)
        database = with_path(admin, dbname)
        r = redis.Redis.from_url(broker)
        try:
            upgrade(database)
            r.flushdb()
            yield broker, database, None if base.database_url else str(tmp / "pg")
        finally:
            get_engine(database).dispose()
            r.flushdb()
            r.close()
            services.drop_database(admin, dbname)
    finally:
        if not base.broker_url:
            services.stop_embedded_redis(tmp / "redis")
        if not base.database_url:
            services.stop_embedded_postgres(tmp / "pg")
        shutil.rmtree(tmp, ignore_errors=True)


def cpu_seconds(names: tuple[str, ...]) -> float:
    """User + system CPU of every process on this machine whose command is one of ``names``, with that of their
    exited children (a PostgreSQL backend ends with its client's connection; the postmaster reaps it), from
    /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(")")
        except OSError:
            continue
        if head.split("(", 1)[1] in names:
            fields = rest.split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def own_cpu() -> tuple[float, float]:
    """(this process, its waited-for children): user + system CPU seconds."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime
