"""Shared fixtures: real PostgreSQL and Redis for every tier.

Where SWITCHYARD_DATABASE_URL / SWITCHYARD_BROKER_URL are set (CI on this machine), the tests use those servers,
in a database of their own (created and dropped here) and a Redis database number of their own (flushed here).
Where they are not set (a fresh machine), they start embedded servers in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from switchyard import services

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
#: Redis database number the tests own on a configured server (flushed by the tests).
TEST_REDIS_DB = int(os.environ.get("SWITCHYARD_TEST_REDIS_DB", "13"))


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def service_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="switchyard-test-"))
    os.chmod(path, 0o755)  # embedded PostgreSQL runs as its own user when we are root
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(service_dir: Path) -> Iterator[str]:
    configured = os.environ.get("SWITCHYARD_BROKER_URL")
    if configured:
        url = _with_db(configured, TEST_REDIS_DB)
        _flush(url)
        yield url
        _flush(url)
        return
    url = services.start_embedded_redis(service_dir / "redis", persistent=False)
    try:
        yield url
    finally:
        services.stop_embedded_redis(service_dir / "redis")


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def pg_admin_url(service_dir: Path) -> Iterator[str]:
    """URL of the server's maintenance database (to create and drop test databases)."""
    configured = os.environ.get("SWITCHYARD_DATABASE_URL")
    if configured:
        parts = urlsplit(configured)
        yield urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
        return
    url = services.start_embedded_postgres(service_dir / "postgres", database="postgres")
    try:
        yield url
    finally:
        services.stop_embedded_postgres(service_dir / "postgres")


def _database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A migrated database of the test session's own."""
    from switchyard.db import upgrade

    name = f"switchyard_test_{uuid.uuid4().hex[:8]}"
    services.ensure_database(pg_admin_url, name)
    url = _database_url(pg_admin_url, name)
    upgrade(url)
    yield url
    from switchyard.db import get_engine

    get_engine(url).dispose()
    get_engine.cache_clear()
    services.drop_database(pg_admin_url, name)


@pytest.fixture
def fresh_database(pg_admin_url: str) -> Iterator[str]:
    """An empty (unmigrated) database, dropped afterwards."""
    name = f"switchyard_empty_{uuid.uuid4().hex[:8]}"
    services.ensure_database(pg_admin_url, name)
    yield _database_url(pg_admin_url, name)
    services.drop_database(pg_admin_url, name)


@pytest.fixture
def db(database_url: str) -> str:
    """The session database with every table emptied: each test starts from nothing."""
    from sqlalchemy import text

    from schemas.tables import Base
    from switchyard.db import get_engine

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(database_url).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return database_url


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    _flush(redis_url)
    return redis_url


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: the public labelled sets the PII and complexity targets are measured on. It lives beside
    the repository and is not copied into it (its README asks so): a clone elsewhere skips those tests."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public labelled data not found at {SHARED_DATA} (it lives beside the repository)")
    return SHARED_DATA


@pytest.fixture
def client(db: str, clean_redis: str, request: pytest.FixtureRequest) -> Iterator[object]:
    """A Client on the test services: with the catalog of the test's ``config`` fixture (a TOML file) where its
    module or folder defines one, else the built-in catalog."""
    from producer.client import Client
    from switchyard.settings import Settings

    try:
        env = {"SWITCHYARD_CONFIG": str(request.getfixturevalue("config"))}
    except pytest.FixtureLookupError:
        env = {}
    c = Client(broker_url=clean_redis, database_url=db, settings=Settings.from_env(env))
    yield c
    c.close()
