"""Database engines and migrations."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def get_engine(url: str, pool_size: int = 10, pre_ping: bool = True) -> Engine:
    """One pooled engine per URL and process.

    ``pre_ping`` checks a connection before each use, so a database restart costs nothing; hot paths (a worker
    writing two statements per job) turn it off and treat a dropped connection as a retryable job error
    instead (SQLAlchemy then replaces the pool's connections).
    """
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping)


def is_transient(exc: DBAPIError) -> bool:
    """Whether a database error says "try again later" rather than "this job is wrong": the connection dropped
    or could not be made (a restart, a failover), the server is shutting down or recovering, a deadlock, a
    serialization failure, a cancelled statement. DB-API files all of these under OperationalError; an
    integrity or programming error is not one of them, and retrying it would fail the same way."""
    return exc.connection_invalidated or isinstance(exc, OperationalError)


def alembic_config(url: str):  # -> alembic.config.Config
    from alembic.config import Config

    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # '%' must be escaped for ConfigParser interpolation.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations to ``url`` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


#: The migration this code expects the database at (tests/integration/test_schema.py checks that it is
#: Alembic's head): the CLI compares it with the database's on every start without loading Alembic.
SCHEMA_HEAD = "0003"


def current_revision(url: str) -> str | None:
    """The database's Alembic revision, or None before the first migration."""
    from sqlalchemy import inspect, text

    with get_engine(url).connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
