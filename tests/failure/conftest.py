"""Fixtures of the failure tier: a catalog that redelivers in seconds (tests/conftest.py's ``client`` uses it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.failure.common import FAST_REDELIVERY


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "switchyard.toml"
    path.write_text(FAST_REDELIVERY)
    return path
