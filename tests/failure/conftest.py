"""Fixtures of the failure tier: a catalog that redelivers in seconds and a client that uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.client import Client
from switchyard.settings import Settings
from tests.failure.common import FAST_REDELIVERY


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "switchyard.toml"
    path.write_text(FAST_REDELIVERY)
    return path


@pytest.fixture
def client(db: str, clean_redis: str, config: Path) -> Iterator[Client]:
    c = Client(broker_url=clean_redis, database_url=db,
               settings=Settings.from_env({"SWITCHYARD_CONFIG": str(config)}))
    yield c
    c.close()
